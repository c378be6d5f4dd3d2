"""Fused attention against PyTorch's scaled_dot_product_attention and against
attnkit's own unfused composition, forward and forward+backward, and the decode
step against memory bandwidth.

    python bench/bench_attention.py [--threads 1 2] [--repeats 10] [--no-torch]

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
bandwidth. The step rotates through one cache per layer (12, as GPT-2 small),
more than the L3 holds, so the caches come from memory as in a real model.
"""

from __future__ import annotations

import common  # first: it sets how idle threads wait, before any thread pool starts
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
DECODE_LAYERS = 12


def unfused(q, k, v):
    """attnkit's kernels, unfused: [B*H, T, D] inputs, the T x T scores in
    memory; returns the output array."""
    scores, _ = _C.matmul(q, k, transpose_b=True, alpha=1.0 / np.sqrt(q.shape[-1]))
    p = F.softmax(attnkit.Tensor._wrap(scores), dim=-1)._array
    out, _ = _C.matmul(p, v)
    return out


def main() -> None:
    parser = common.argument_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    torch = common.optional_torch(disabled=args.no_torch)
    rng = np.random.default_rng(0)
    timed = dict(warmup=args.warmup, repeats=args.repeats)
    rows = []

    for threads in args.threads:
        common.set_threads(threads, torch)
        peak = common.fma_peak(threads)
        for b, h, t, d, causal in SHAPES:
            shape = (b, t, h, d)
            q, k, v, g = (rng.standard_normal(shape, dtype=np.float32) for _ in range(4))
            aq, ak, av = (attnkit.tensor(x, requires_grad=True) for x in (q, k, v))
            ag = attnkit.tensor(g)
            forward = {"ours": lambda: F.attention(aq, ak, av, causal=causal)}
            both = {"ours": lambda: F.attention(aq, ak, av, causal=causal).backward(ag)}
            if not causal and t <= 1024:
                heads_first = [np.ascontiguousarray(x.transpose(0, 2, 1, 3).reshape(b * h, t, d)) for x in (q, k, v)]
                uq, uk, uv = (attnkit.from_numpy(x)._array for x in heads_first)
                forward["unfused"] = lambda: unfused(uq, uk, uv)
            if torch is not None:
                tq, tk, tv = (torch.tensor(x).transpose(1, 2).contiguous().requires_grad_() for x in (q, k, v))
                tg = torch.tensor(g).transpose(1, 2).contiguous()
                sdpa = torch.nn.functional.scaled_dot_product_attention
                forward["torch"] = lambda: sdpa(tq, tk, tv, is_causal=causal)
                both["torch"] = lambda: sdpa(tq, tk, tv, is_causal=causal).backward(tg)
            flops = 4.0 * b * h * t * t * d * (0.5 if causal else 1.0)
            case = f"B{b} H{h} T{t} D{d}" + (" causal" if causal else "")
            timings = common.time_side_by_side(forward, **timed)
            rows.append(
                common.Row(
                    "attention forward", case, threads, flops, "GFLOP/s", timings.pop("ours"), timings, peak, "FMA peak"
                )
            )
            timings = common.time_side_by_side(both, **timed)
            rows.append(
                common.Row(
                    "attention fwd+bwd",
                    case,
                    threads,
                    3.5 * flops,
                    "GFLOP/s",
                    timings.pop("ours"),
                    timings,
                    peak,
                    "FMA peak",
                )
            )

        b, h, tk, d = DECODE
        read_bandwidth = common.memory_bandwidth("read", threads, args.probe_mib)
        queries = [attnkit.tensor(rng.standard_normal((b, 1, h, d), dtype=np.float32)) for _ in range(DECODE_LAYERS)]
        caches = [
            (
                attnkit.tensor(rng.standard_normal((b, tk, h, d), dtype=np.float32)),
                attnkit.tensor(rng.standard_normal((b, tk, h, d), dtype=np.float32)),
            )
            for _ in range(DECODE_LAYERS)
        ]

        def decode_step():
            with attnkit.no_grad():
                for query, (key, value) in zip(queries, caches):
                    F.attention(query, key, value, causal=True)

        decode = {"ours": decode_step}
        if torch is not None:
            tqueries = [torch.tensor(x.numpy()).transpose(1, 2).contiguous() for x in queries]
            tcaches = [tuple(torch.tensor(x.numpy()).transpose(1, 2).contiguous() for x in kv) for kv in caches]

            def torch_step():
                with torch.no_grad():
                    for query, (key, value) in zip(tqueries, tcaches):
                        torch.nn.functional.scaled_dot_product_attention(query, key, value)

            decode["torch"] = torch_step
        timings = common.time_side_by_side(decode, **timed)
        cache_bytes = 2.0 * b * tk * h * d * 4 * DECODE_LAYERS
        rows.append(
            common.Row(
                "attention decode",
                f"B{b} H{h} Tk{tk} D{d} x{DECODE_LAYERS} layers",
                threads,
                cache_bytes,
                "GB/s",
                timings.pop("ours"),
                timings,
                read_bandwidth,
                "read",
            )
        )

    facts = common.machine_facts(torch)
    print(", ".join(f"{key}: {value}" for key, value in facts.items()))
    common.print_table(rows, title="Attention (float32): GFLOP/s; decode in GB/s of K and V")
    path = common.write_results(__file__, rows, vars(args), torch)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
