"""Milliseconds per GPT training step, attnkit against the same model in PyTorch.

    python bench/bench_train_step.py [--configs A B] [--threads 2] [--repeats 5] [--no-torch] [--profile]

One step is what a training loop does: forward, cross-entropy, backward,
AdamW step, zero_grad, and ``loss.item()``. Both models start from the same
weights (attnkit.benchmarks.gpt_pair copies attnkit's) and see the same batch; the two
steps are timed in alternating rounds at one thread count, and the medians
are compared.

- config A, nanoGPT's CPU Shakespeare config: 4 layers, 4 heads, 128 wide,
  block 64, batch 12, vocab 65;
- config B, GPT-2-small dims: 12 layers, 12 heads, 768 wide, block 256,
  batch 4, vocab 50257.

Also reported:
- the Python overhead of attnkit's step: the wall time of one instrumented
  step less the time inside native kernels (every ``attnkit._C`` function is
  wrapped with a timer for that step, ``common.KernelTimer``) and less the
  timers' own cost; ``--profile`` prints the per-kernel breakdown;
- the FMA-peak bound: the step's FLOPs over the FP32 FMA peak measured by
  the native probe at the same thread count. FLOPs count the matrix products
  (2 per multiply-add; backward twice the forward) and causal attention's
  needed half (forward 4 B T^2 C per layer, backward 2.5x that).

The step itself (and its FLOP count) is attnkit.benchmarks', which ``attnkit
bench`` times for config A too. PyTorch's AdamW runs with ``fused=True`` (its fastest CPU form;
``--torch-optimizer foreach`` picks the other).
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import common  # first: it sets how idle threads wait, before any thread pool starts

from attnkit import benchmarks


def python_overhead(step, passes: int = 3):
    """(wall, kernel seconds, Python seconds) per step, each the median over
    ``passes`` instrumented steps, and the KernelTimer that timed them all
    (its per-kernel totals cover every pass: divide by ``passes``)."""
    figures = []
    with common.KernelTimer() as timer:
        for _ in range(passes):
            kernel_before, calls_before = timer.kernel_seconds, timer.total_calls
            start = time.perf_counter()
            step()
            wall = time.perf_counter() - start
            kernel = timer.kernel_seconds - kernel_before
            calls = timer.total_calls - calls_before
            figures.append((wall, kernel, wall - kernel - calls * timer.wrapper_seconds_per_call))
    return tuple(statistics.median(f[i] for f in figures) for i in range(3)), timer


def main() -> None:
    parser = common.argument_parser(__doc__.splitlines()[0])
    parser.set_defaults(threads=[2], repeats=5, warmup=1)
    parser.add_argument("--configs", nargs="+", default=["A", "B"], choices=["A", "B"])
    parser.add_argument(
        "--repeats-b", type=int, default=3, help="timed rounds for config B, whose steps take seconds (default: 3)"
    )
    parser.add_argument("--torch-optimizer", choices=["fused", "foreach"], default="fused")
    parser.add_argument("--profile", action="store_true", help="print the per-kernel time of one step")
    args = parser.parse_args()
    torch = common.optional_torch(disabled=args.no_torch)

    results = []
    for threads in args.threads:
        common.set_threads(threads, torch)
        peak = common.fma_peak(threads)
        for key in args.configs:
            config, batch, ours, theirs = benchmarks.gpt_pair(key, torch)
            inputs, targets = benchmarks.random_batch(config, batch)
            steps = {"attnkit": benchmarks.gpt_train_step(ours, inputs, targets)}
            if theirs is not None:
                steps["torch"] = benchmarks.torch_gpt_train_step(torch, theirs, inputs, targets, args.torch_optimizer)
            repeats = args.repeats if key == "A" else args.repeats_b
            timings = common.time_side_by_side(steps, warmup=args.warmup, repeats=repeats)
            passes = 5 if key == "A" else 1
            (wall, kernel, python), timer = python_overhead(steps["attnkit"], passes)
            flops = benchmarks.train_step_flops(config, batch)
            row = {
                "config": key,
                "threads": threads,
                "batch": batch,
                "block": config.block_size,
                "n_layer": config.n_layer,
                "n_embd": config.n_embd,
                "vocab": config.vocab_size,
                "attnkit_ms": timings["attnkit"].median * 1e3,
                "attnkit_spread": timings["attnkit"].spread,
                "torch_ms": timings["torch"].median * 1e3 if "torch" in timings else None,
                "torch_spread": timings["torch"].spread if "torch" in timings else None,
                "instrumented_wall_ms": wall * 1e3,
                "kernel_ms": kernel * 1e3,
                "python_ms": python * 1e3,
                "native_calls": timer.total_calls // passes,
                "wrapper_us_per_call": timer.wrapper_seconds_per_call * 1e6,
                "step_gflop": flops * 1e-9,
                "fma_peak_gflops": peak,
                "fma_bound_ms": flops / (peak * 1e9) * 1e3,
            }
            results.append(row)
            if args.profile:
                print(
                    f"\nconfig {key}, {threads} threads: per step (mean of {passes}), "
                    f"{timer.total_calls // passes} native calls, kernels {kernel * 1e3:.1f} ms, "
                    f"Python {python * 1e3:.1f} ms of {wall * 1e3:.1f} ms (medians)"
                )
                for name, seconds, calls in timer.breakdown(top=25):
                    print(f"  {name:<28} {seconds / passes * 1e3:9.2f} ms  {calls // passes:5d} calls")

    print()
    header = [
        "config",
        "thr",
        "attnkit ms",
        "±",
        "torch ms",
        "±",
        "attnkit/torch",
        "kernels ms",
        "python ms",
        "calls",
        "FMA bound ms",
        "of peak",
    ]
    lines = []
    for r in results:
        torch_ms = r["torch_ms"]
        lines.append(
            [
                r["config"],
                str(r["threads"]),
                f"{r['attnkit_ms']:.1f}",
                f"{50 * r['attnkit_spread']:.0f}%",
                "-" if torch_ms is None else f"{torch_ms:.1f}",
                "-" if torch_ms is None else f"{50 * r['torch_spread']:.0f}%",
                "-" if torch_ms is None else f"{r['attnkit_ms'] / torch_ms:.2f}",
                f"{r['kernel_ms']:.1f}",
                f"{r['python_ms']:.1f}",
                str(r["native_calls"]),
                f"{r['fma_bound_ms']:.1f}",
                f"{r['fma_bound_ms'] / r['attnkit_ms']:.0%}",
            ]
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for line in lines:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)))
    print(
        "\nattnkit/torch below 1: attnkit is faster. python ms: wall of one instrumented step "
        "less kernel time less the timers' own cost "
        f"({results[0]['wrapper_us_per_call']:.2f} us per call)."
    )

    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = common.RESULTS_DIR / "bench_train_step.json"
    path.write_text(
        json.dumps(
            {
                "command": " ".join([common.Path(sys.executable).name] + sys.argv),
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "machine": common.machine_facts(torch),
                "torch_optimizer": args.torch_optimizer,
                "rows": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written to {path}")


if __name__ == "__main__":
    main()
