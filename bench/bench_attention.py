"""Fused attention against PyTorch's scaled_dot_product_attention and against
attnkit's own unfused composition, forward and forward+backward, and the decode
step against memory bandwidth.

    python bench/bench_attention.py [--threads 1 2] [--rounds 3] [--repeats 10] [--no-torch]

FLOPs: forward 4 B H Tq Tk D (Q K^T and P V), forward+backward 3.5x that (the
backward does five products of the same size, 2.5x the forward); causal
attention counts half, the work that is needed. Layout: attnkit takes
[B, T, H, D]; PyTorch takes [B, H, T, D] (both are given contiguous inputs of
their layout, converted before timing).

The unfused composition is the plain way with attnkit's own kernels: S = Q K^T
(batched GEMM), softmax over S, then P V, with the T x T matrix in memory; it
runs on the non-causal shapes up to T = 1024.

Decode: one query per head against a cache of Tk keys, as when generating a
token; GB/s are counted on the bytes of K and V read, against the probe's read
bandwidth. The step rotates through one cache per layer (12, as GPT-2 small,
or more, to twice the L3's size), so the caches come from memory as in a real
model.
"""

from __future__ import annotations

import common
import numpy as np

import attnkit
import attnkit.nn.functional as F
from attnkit import _C

SHAPES = [  # (B, H, T, D, causal)
    (4, 12, 256, 64, False),
    (1, 12, 1024, 64, False),
    (8, 8, 128, 64, False),
    (1, 16, 4096, 64, True),
    # the training configs' attention (attnkit.benchmarks.TRAIN_CONFIGS A and B)
    (12, 4, 64, 32, True),
    (4, 12, 256, 64, True),
]
DECODE = (1, 12, 1024, 64)  # B, H, Tk, D
DECODE_LAYERS = 12  # at least; more where twice the L3 holds more caches


def decode_layers() -> int:
    """Caches (one per layer) the decode step rotates through: as GPT-2 small
    has, or as many as make twice the L3, so that they come from memory."""
    b, h, tk, d = DECODE
    return max(DECODE_LAYERS, -(-common.beyond_l3_mib(0) * common.MIB // (2 * b * tk * h * d * 4)))


def unfused(q, k, v):
    """attnkit's kernels, unfused: [B*H, T, D] inputs, the T x T scores in
    memory; returns the output array."""
    scores, _ = _C.matmul(q, k, transpose_b=True, alpha=1.0 / np.sqrt(q.shape[-1]))
    p = F.softmax(attnkit.Tensor._wrap(scores), dim=-1)._array
    out, _ = _C.matmul(p, v)
    return out


def measure(recorder, side: str, torch, args) -> None:
    """This side's rows: attnkit's fused attention (and the unfused
    composition), or PyTorch's SDPA."""
    for b, h, t, d, causal in SHAPES:
        rng = np.random.default_rng(t)
        shape = (b, t, h, d)
        q, k, v, g = (rng.standard_normal(shape, dtype=np.float32) for _ in range(4))
        if side == "attnkit":
            aq, ak, av = (attnkit.tensor(x, requires_grad=True) for x in (q, k, v))
            ag = attnkit.tensor(g)
            forward = {"attnkit": lambda: F.attention(aq, ak, av, causal=causal)}
            both = {"attnkit": lambda: F.attention(aq, ak, av, causal=causal).backward(ag)}
            if not causal and t <= 1024:
                heads_first = [np.ascontiguousarray(x.transpose(0, 2, 1, 3).reshape(b * h, t, d)) for x in (q, k, v)]
                uq, uk, uv = (attnkit.from_numpy(x)._array for x in heads_first)
                forward["unfused"] = lambda: unfused(uq, uk, uv)
        else:
            tq, tk, tv = (torch.tensor(x).transpose(1, 2).contiguous().requires_grad_() for x in (q, k, v))
            tg = torch.tensor(g).transpose(1, 2).contiguous()
            sdpa = torch.nn.functional.scaled_dot_product_attention
            forward = {"torch": lambda: sdpa(tq, tk, tv, is_causal=causal)}
            both = {"torch": lambda: sdpa(tq, tk, tv, is_causal=causal).backward(tg)}
        flops = 4.0 * b * h * t * t * d * (0.5 if causal else 1.0)
        case = f"B{b} H{h} T{t} D{d}" + (" causal" if causal else "")
        recorder.time("attention forward", case, forward, work=flops, unit="GFLOP/s", limit="fma")
        recorder.time("attention fwd+bwd", case, both, work=3.5 * flops, unit="GFLOP/s", limit="fma")

    b, h, tk, d = DECODE
    layers = decode_layers()
    rng = np.random.default_rng(0)
    queries = [rng.standard_normal((b, 1, h, d), dtype=np.float32) for _ in range(layers)]
    first = tuple(rng.standard_normal((b, tk, h, d), dtype=np.float32) for _ in range(2))
    caches = [first] + [tuple(x.copy() for x in first) for _ in range(layers - 1)]  # distinct memory, as fast as a copy
    if side == "attnkit":
        our_queries = [attnkit.tensor(x) for x in queries]
        our_caches = [tuple(attnkit.tensor(x) for x in kv) for kv in caches]

        def decode_step():
            with attnkit.no_grad():
                for query, (key, value) in zip(our_queries, our_caches):
                    F.attention(query, key, value, causal=True)

    else:
        torch_queries = [torch.tensor(x).transpose(1, 2).contiguous() for x in queries]
        torch_caches = [tuple(torch.tensor(x).transpose(1, 2).contiguous() for x in kv) for kv in caches]

        def decode_step():
            with torch.no_grad():
                for query, (key, value) in zip(torch_queries, torch_caches):
                    torch.nn.functional.scaled_dot_product_attention(query, key, value)

    recorder.time(
        "attention decode",
        f"B{b} H{h} Tk{tk} D{d} x{layers} layers",
        {side: decode_step},
        work=2.0 * b * tk * h * d * 4 * layers,  # the bytes of K and V
        unit="GB/s",
        limit="read",
    )


def main() -> None:
    parser = common.argument_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    common.run(__file__, args, measure, title="Attention (float32): GFLOP/s; decode in GB/s of K and V")


if __name__ == "__main__":
    main()
