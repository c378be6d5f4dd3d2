"""A mixture-of-experts layer against the dense feed-forward layer with the
same active parameters: 8 experts of width d_ff, top-2, against one FFN of
width 2 d_ff, on the same tokens.

    python bench/bench_moe.py [--threads 1 2] [--tokens 4096] [--d-model 512] [--d-ff 1024] [--rounds 3]

Both sides do the same FLOPs in their expert GEMMs (each token meets 2 x d_ff
hidden units either way); the MoE layer adds the router (a [tokens, 8]
product and softmax), the top-2 choice, the counting sort, the gather of
each expert's tokens and the weighted scatter back. The target is a MoE
time at most 1.3x the dense time, i.e. ours/dense >= 0.77. Work is counted
as the expert GEMMs' FLOPs (forward 4 N C F_active; forward and backward
three times that), so GFLOP/s are comparable between the two columns.
Both are attnkit's (the comparison is of two layers of one library), timed
in alternating calls in each worker.
"""

from __future__ import annotations

import common
import numpy as np

import attnkit
from attnkit import nn

N_EXPERTS, TOP_K = 8, 2


def measure(recorder, side: str, torch, args) -> None:
    rng = np.random.default_rng(0)
    tokens, d_model, d_ff = args.tokens, args.d_model, args.d_ff
    attnkit.manual_seed(0)
    moe = nn.MoEFeedForward(d_model, N_EXPERTS, TOP_K, d_ff, activation="gelu_tanh")
    dense = nn.FeedForward(d_model, TOP_K * d_ff, activation="gelu_tanh")
    x_numpy = rng.standard_normal((tokens, d_model), dtype=np.float32)
    x = attnkit.from_numpy(x_numpy)
    x_grad = attnkit.from_numpy(x_numpy).requires_grad_()
    dy = attnkit.from_numpy(rng.standard_normal((tokens, d_model), dtype=np.float32))

    def train_step(layer):
        def step():
            y = layer(x_grad)
            loss = (y * dy).sum()
            if layer is moe:
                loss = loss + 0.01 * layer.aux_loss
            loss.backward()

        return step

    flops = 4.0 * tokens * d_model * TOP_K * d_ff  # two GEMMs over d_ff_active = TOP_K * d_ff hidden units
    case = f"{tokens} tokens, d_model {d_model}, {N_EXPERTS}x{d_ff} top-{TOP_K} vs {TOP_K * d_ff}"
    with attnkit.no_grad():
        recorder.time(
            "moe forward",
            case,
            {"attnkit": lambda: moe(x), "dense": lambda: dense(x)},
            work=flops,
            unit="GFLOP/s",
            limit="fma",
        )
    recorder.time(
        "moe forward+backward",
        case,
        {"attnkit": train_step(moe), "dense": train_step(dense)},
        work=3 * flops,
        unit="GFLOP/s",
        limit="fma",
    )


def main() -> None:
    parser = common.argument_parser(__doc__.splitlines()[0], peers=False)
    parser.add_argument("--tokens", type=int, default=4096, help="tokens per call (default: 4096)")
    parser.add_argument("--d-model", type=int, default=512, help="the model width (default: 512)")
    parser.add_argument("--d-ff", type=int, default=1024, help="each expert's width (default: 1024)")
    args = parser.parse_args()
    args.no_torch = True
    common.run(
        __file__,
        args,
        measure,
        peers=(),
        title=f"MoE ({N_EXPERTS} experts, top-{TOP_K}) against the dense FFN of the same active parameters "
        "(ours/dense >= 0.77 meets the 1.3x target)",
        settings={"n_experts": N_EXPERTS, "top_k": TOP_K},
    )


if __name__ == "__main__":
    main()
