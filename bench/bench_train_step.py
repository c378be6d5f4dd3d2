"""Milliseconds per GPT training step, attnkit against the same model in PyTorch.

    python bench/bench_train_step.py [--configs A B] [--threads 2] [--rounds 3] [--repeats 5] [--no-torch]
                                     [--torch-compile] [--autocast] [--profile]

One step is what a training loop does: forward, cross-entropy, backward,
AdamW step, zero_grad, and ``loss.item()``. Both models start from the same
weights (attnkit.benchmarks.gpt_pair copies attnkit's) and see the same
batch. Each library runs in worker processes of its own, in alternating
rounds (common.py):

- config A, nanoGPT's CPU Shakespeare config: 4 layers, 4 heads, 128 wide,
  block 64, batch 12, vocab 65;
- config B, GPT-2-small dims: 12 layers, 12 heads, 768 wide, block 256,
  batch 4, vocab 50257.

PyTorch's columns: ``torch`` is torch.optim.AdamW as a user gets it without
options (on the CPU, its per-parameter loop); ``torch fused`` passes
``fused=True``, its fastest documented CPU form; ``--torch-compile`` adds
``torch compile``, the model through ``torch.compile`` with fused AdamW (the
compilation happens in the warm-up, untimed).

Also reported:
- the Python overhead of attnkit's step: the wall time of one instrumented
  step less the time inside native kernels and less the timers' own cost, in
  one more worker run under bench/kernel_timer.py (every ``attnkit._C``
  function timed); ``--profile`` prints the per-kernel breakdown;
- the FMA-peak bound: the step's FLOPs over the FP32 FMA peak measured by
  the native probe at the same thread count. FLOPs count the matrix products
  (2 per multiply-add; backward twice the forward) and causal attention's
  needed half (forward 4 B T^2 C per layer, backward 2.5x that).

``--autocast``: every step of every column runs in its library's bf16 mixed
precision, ``attnkit.autocast(dtype=attnkit.bfloat16)`` and
``torch.autocast("cpu", dtype=torch.bfloat16)`` (matrix products in bf16,
float32 weights and gradients); compare with a run without it for the gain
over float32.

The step itself (and its FLOP count) is attnkit.benchmarks', which ``attnkit
bench`` times for config A too.
"""

from __future__ import annotations

import statistics
import time

import common

import attnkit
from attnkit import benchmarks

PROFILE_SIDE = "attnkit profile"


def repeats_of(config: str, args) -> int:
    return args.repeats if config == "A" else args.repeats_b


def in_autocast(step, autocast):
    """``step`` run inside a fresh ``autocast()`` context each call."""

    def run() -> float:
        with autocast():
            return step()

    return run


def measure(recorder, side: str, torch, args) -> None:
    for key in args.configs:
        config, batch, ours, theirs = benchmarks.gpt_pair(key, torch)
        inputs, targets = benchmarks.random_batch(config, batch)
        if side == PROFILE_SIDE:
            step = benchmarks.gpt_train_step(ours, inputs, targets)
            if args.autocast:
                step = in_autocast(step, attnkit.autocast)
            recorder.facts[key] = python_overhead(step, key)
            continue
        if side == "attnkit":
            steps = {"attnkit": benchmarks.gpt_train_step(ours, inputs, targets)}
        else:
            steps = {"torch": benchmarks.torch_gpt_train_step(torch, theirs, inputs, targets, "default")}
            _, _, _, fused_model = benchmarks.gpt_pair(key, torch)
            steps["torch fused"] = benchmarks.torch_gpt_train_step(torch, fused_model, inputs, targets, "fused")
            if args.torch_compile:
                _, _, _, compiled_model = benchmarks.gpt_pair(key, torch)
                compiled = torch.compile(compiled_model)  # forwards .config and .parameters() to the model
                steps["torch compile"] = benchmarks.torch_gpt_train_step(torch, compiled, inputs, targets, "fused")
        if args.autocast:
            autocast = attnkit.autocast if side == "attnkit" else lambda: torch.autocast("cpu", dtype=torch.bfloat16)
            steps = {name: in_autocast(step, autocast) for name, step in steps.items()}
        recorder.time(
            "train step",
            key,
            steps,
            work=benchmarks.train_step_flops(config, batch),
            unit="GFLOP/s",
            limit="fma",
            repeats=repeats_of(key, args),
            shape=f"L{config.n_layer} H{config.n_head} C{config.n_embd} T{config.block_size} B{batch}"
            f" V{config.vocab_size}",
        )


def python_overhead(step, config: str) -> dict:
    """Per step, the medians over a few instrumented steps (after one
    untimed): wall, kernel and Python milliseconds, native calls; and the
    per-kernel totals of all of them."""
    import kernel_timer  # in the profile worker only, which runs under bench/kernel_timer.py

    passes = 5 if config == "A" else 1
    step()
    figures = []
    with kernel_timer.KernelTimer() as timer:
        for _ in range(passes):
            kernel_before, calls_before = timer.kernel_seconds, timer.total_calls
            start = time.perf_counter()
            step()
            wall = time.perf_counter() - start
            kernel = timer.kernel_seconds - kernel_before
            calls = timer.total_calls - calls_before
            figures.append((wall, kernel, wall - kernel - calls * timer.wrapper_seconds_per_call, calls))
    wall, kernel, python, calls = (statistics.median(f[i] for f in figures) for i in range(4))
    return {
        "wall_ms": wall * 1e3,
        "kernel_ms": kernel * 1e3,
        "python_ms": python * 1e3,
        "native_calls": calls,
        "wrapper_us_per_call": timer.wrapper_seconds_per_call * 1e6,
        "by_kernel_ms": {name: seconds / passes * 1e3 for name, seconds, _ in timer.breakdown()},
        "calls_by_kernel": {name: count / passes for name, _, count in timer.breakdown()},
    }


def main() -> None:
    parser = common.argument_parser(__doc__.splitlines()[0])
    parser.set_defaults(threads=[2], repeats=5, warmup=1)
    parser.add_argument("--configs", nargs="+", default=["A", "B"], choices=["A", "B"])
    parser.add_argument(
        "--repeats-b", type=int, default=3, help="timed steps of config B per worker; they take seconds (default: 3)"
    )
    parser.add_argument("--torch-compile", action="store_true", help="add PyTorch with torch.compile (slow to start)")
    parser.add_argument(
        "--autocast", action="store_true", help="every library in its bf16 autocast (float32 masters and gradients)"
    )
    parser.add_argument("--profile", action="store_true", help="print the per-kernel time of one step")
    args = parser.parse_args()
    common.run_worker(args, measure)

    facts = common.print_machine(args)
    names = common.sides(args)
    precision = "bf16 autocast" if args.autocast else "float32"
    print(f"{args.rounds} round(s) of {', '.join(names)} worker processes at {args.threads} thread(s), {precision}")
    merged, _ = common.measure_sides(__file__, args, names)
    _, profiles = common.measure_sides(
        __file__, args, [PROFILE_SIDE], rounds=1, runner=common.kernel_timer_runner(__file__)
    )

    results = []
    for row in merged:
        key, threads = row["case"], row["threads"]
        profile = profiles[threads][PROFILE_SIDE][0]["facts"][key]
        timings = row["columns"]
        ours = timings.pop("attnkit")
        peak = common.limits(threads, args.probe_mib)["fma"]
        fma_bound_ms = row["work"] / (peak * 1e9) * 1e3
        results.append(
            {
                "config": key,
                "shape": row["extra"]["shape"],
                "threads": threads,
                "attnkit": ours.to_json(),
                "peers": {name: t.to_json() for name, t in timings.items()},
                "attnkit_over_peer": {name: ours.median / t.median for name, t in timings.items()},
                "profile": profile,
                "step_gflop": row["work"] * 1e-9,
                "fma_peak_gflops": peak,
                "fma_bound_ms": fma_bound_ms,
                "fraction_of_peak": fma_bound_ms / (ours.median * 1e3),
            }
        )
        if args.profile:
            print(
                f"\nconfig {key}, {threads} threads, per step: {profile['native_calls']:.0f} native calls, kernels "
                f"{profile['kernel_ms']:.1f} ms, Python {profile['python_ms']:.1f} ms of {profile['wall_ms']:.1f} ms"
            )
            for name, ms in list(profile["by_kernel_ms"].items())[:25]:
                print(f"  {name:<28} {ms:9.2f} ms  {profile['calls_by_kernel'][name]:7.1f} calls")

    peer_names = list(dict.fromkeys(name for r in results for name in r["peers"]))
    header = ["config", "thr", "attnkit ms", "±"]
    for name in peer_names:
        header += [f"{name} ms", "±", f"attnkit/{name}"]
    header += ["kernels ms", "python ms", "calls", "FMA bound ms", "of peak"]
    lines = []
    for r in results:
        line = [r["config"], str(r["threads"]), f"{r['attnkit']['median'] * 1e3:.1f}", spread(r["attnkit"])]
        for name in peer_names:
            peer = r["peers"].get(name)
            line += (
                ["-", "", "-"]
                if peer is None
                else [f"{peer['median'] * 1e3:.1f}", spread(peer), f"{r['attnkit_over_peer'][name]:.2f}"]
            )
        profile = r["profile"]
        line += [
            f"{profile['kernel_ms']:.1f}",
            f"{profile['python_ms']:.1f}",
            f"{profile['native_calls']:.0f}",
            f"{r['fma_bound_ms']:.1f}",
            f"{r['fraction_of_peak']:.0%}",
        ]
        lines.append(line)
    print()
    print(common.format_columns(header, lines))
    print(
        "\nattnkit/peer below 1: attnkit is faster. ±: half the spread of the round medians (one round: of the calls). "
        "kernels and python ms: one instrumented attnkit step, in a worker of its own "
        f"(timers' own cost {results[0]['profile']['wrapper_us_per_call']:.2f} us per call, taken out)."
    )
    path = common.write_document(__file__, facts, {"settings": vars(args), "rows": results})
    print(f"written to {path}")


def spread(timing: dict) -> str:
    return f"{50 * timing['spread']:.0f}%"


if __name__ == "__main__":
    main()
