"""Sparse attention patterns in the fused kernel against dense causal
attention at the same sizes, forward and forward+backward.

    python bench/bench_attention_sparse.py [--lengths 4096 16384 65536] [--threads 2] [--rounds 1] [--repeats 3]
        [--backward-up-to 16384]

The target (issue 16): a pattern's time within 1.3x of (visible pairs / T^2)
x the dense time, the blocks the pattern hides whole being skipped. Dense
attention computes T^2 pairs; the dense causal row measured here computes
its T (T + 1) / 2 visible ones, so the target is taken as 1.3 x (visible
pairs / (T (T + 1) / 2)) x the dense causal time: the cost per visible pair
at most 1.3x dense causal attention's (by which dense causal meets it
exactly). GFLOP/s count the visible pairs only (4 D FLOPs each forward,
3.5x that forward+backward), so a pattern's rate against the dense row's
is the share of its computed work that was visible. The patterns, all
causal:

- window: a sliding window of 512 keys (Mistral);
- dilated: a window of 1024 keys, every second one (dilation 2);
- longformer: a window of 512 plus 32 global tokens, leading (a question's
  tokens, as Longformer's QA runs) or spread over the sequence (one every
  T / 32 positions: a query block holding a global query computes every key
  its causal row reaches, so spread global queries cost the most);
- bigbird: blocks of 64, a band of 3 blocks, the first block column and 3
  random blocks per block row, as a block mask.

The lengths are those of issue 16, 4k, 16k and 64k; forward+backward is
timed up to --backward-up-to (16k by default: at 64k dense causal
forward+backward takes minutes per call on 2 cores; pass 65536 to time it
too).

attnkit only: PyTorch's SDPA has no sparse patterns (an explicit mask would
be a T x T tensor, dense work).
"""

from __future__ import annotations

import common
import numpy as np

import attnkit
import attnkit.nn.functional as F

HEADS, HEAD_DIM = 4, 64


def patterns(t: int) -> dict:
    rng = np.random.default_rng(0)
    blocks = t // 64
    bigbird = np.zeros((blocks, blocks), bool)
    for row in range(blocks):
        bigbird[row, max(0, row - 2) : row + 1] = True
        bigbird[row, 0] = True
        bigbird[row, rng.integers(0, row + 1, 3)] = True
    return {
        "dense causal": {},
        "window 512": dict(window=512),
        "dilated 1024/2": dict(window=1024, dilation=2),
        "longformer 512 + 32 leading": dict(window=512, global_tokens=list(range(32))),
        "longformer 512 + 32 spread": dict(window=512, global_tokens=list(range(0, t, t // 32))),
        "bigbird 64": dict(block_size=64, block_mask=bigbird),
    }


def visible_pairs(t: int, window=None, dilation=1, global_tokens=(), block_mask=None, block_size=None) -> int:
    """The visible (query, key) pairs of a causal pattern, counted from its
    definition, rows in chunks."""
    is_global = np.zeros(t, bool)
    is_global[list(global_tokens)] = True
    j = np.arange(t)[None, :]
    total = 0
    for i0 in range(0, t, 512):
        i = np.arange(i0, min(t, i0 + 512))[:, None]
        local = (i - j) % dilation == 0
        if window is not None:
            local &= np.abs(i - j) < window
        if block_mask is not None:
            local &= block_mask[i // block_size, j // block_size]
        total += int(((j <= i) & (local | is_global[i] | is_global[j])).sum())
    return total


def measure(recorder, side: str, torch, args) -> None:
    for t in args.lengths:
        rng = np.random.default_rng(t)
        shape = (1, t, HEADS, HEAD_DIM)
        q, k, v, g = (rng.standard_normal(shape, dtype=np.float32) for _ in range(4))
        aq, ak, av = (attnkit.tensor(x, requires_grad=True) for x in (q, k, v))
        ag = attnkit.tensor(g)
        for name, pattern in patterns(t).items():
            flops = 4.0 * HEADS * HEAD_DIM * visible_pairs(t, **pattern)
            case = f"T{t} {name}"

            def forward(pattern=pattern):
                with attnkit.no_grad():
                    F.attention(aq, ak, av, causal=True, **pattern)

            def both(pattern=pattern):
                F.attention(aq, ak, av, causal=True, **pattern).backward(ag)

            recorder.time("sparse forward", case, {side: forward}, work=flops, unit="GFLOP/s", limit="fma")
            if t <= args.backward_up_to:
                recorder.time("sparse fwd+bwd", case, {side: both}, work=3.5 * flops, unit="GFLOP/s", limit="fma")


def print_targets(rows: list) -> None:
    """Each pattern's time against (visible pairs / causal pairs) x the dense
    causal time of its length and op."""
    dense = {}
    for r in rows:
        t, name = r.case.split(" ", 1)
        if name == "dense causal":
            dense[(r.op, r.threads, t)] = r
    header = ["op", "case", "thr", "ms", "visible / T^2", "target ms", "time / target"]
    lines = []
    for r in rows:
        t, name = r.case.split(" ", 1)
        base = dense.get((r.op, r.threads, t))
        if name == "dense causal" or base is None:
            continue
        share = r.work / (4.0 * HEADS * HEAD_DIM * (3.5 if "bwd" in r.op else 1.0)) / int(t[1:]) ** 2
        target = 1.3 * r.work / base.work * base.ours.median  # the works: 4 D FLOPs per visible pair
        lines.append(
            [
                r.op,
                r.case,
                str(r.threads),
                f"{r.ours.median * 1e3:.1f}",
                f"{share:.4f}",
                f"{target * 1e3:.1f}",
                f"{r.ours.median / target:.2f}",
            ]
        )
    print("\nAgainst the target, 1.3 x (visible pairs / causal pairs) x the dense causal time (time / target <= 1)")
    print(common.format_columns(header, lines))


def main() -> None:
    parser = common.argument_parser(__doc__.splitlines()[0], peers=False)
    parser.add_argument(
        "--lengths",
        type=int,
        nargs="+",
        default=[4096, 16384, 65536],
        help="sequence lengths (default: 4096 16384 65536)",
    )
    parser.add_argument(
        "--backward-up-to", type=int, default=16384, help="time forward+backward up to this length (default: 16384)"
    )
    parser.set_defaults(threads=[2], rounds=1, repeats=3, warmup=1)
    args = parser.parse_args()
    rows = common.run(
        __file__, args, measure, peers=(), title="Sparse attention (float32, causal): GFLOP/s of visible pairs"
    )
    print_targets(rows)


if __name__ == "__main__":
    main()
