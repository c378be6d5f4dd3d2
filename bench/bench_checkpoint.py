"""Gradient checkpointing: peak memory and step time of a GPT training step
with and without ``gradient_checkpointing``.

    python bench/bench_checkpoint.py [--config B] [--threads 2] [--rounds 3] [--steps 2]

Each variant runs in a fresh process of its own (peak RSS is a process's
lifetime maximum), in alternating rounds: plain, checkpointed, plain, ...
A worker builds the model (dropout 0.1, so the recomputation has masks to
repeat) and AdamW, runs one warm-up step, and then ``--steps`` timed steps
(forward, cross-entropy, zero_grad, backward, AdamW).

How activation memory is told apart from the rest:

- ``floor``: the worker's RSS with the model and AdamW built, before any
  step (weights, Python and the libraries), plus the bytes every step adds
  whatever it computes: AdamW's two moments and the gradients (three
  float32 values per parameter). The RSS after a step is no floor: freed
  memory the C library keeps in its heap stays counted there;
- activation memory by RSS = peak RSS (``ru_maxrss``) - floor: the saved
  activations, the logits and their gradient, the transient buffers of
  backward and what the allocator keeps for reuse, at their highest;
- activation memory by the allocator: the bytes attnkit's arrays hold at
  the end of forward beyond those at its start (what the graph saved, plus
  the logits and loss), and the highest live bytes sampled during backward
  (in every parameter's post-accumulate-grad hook) beyond the start, less
  the gradients finished by then. These count attnkit's arrays only,
  exactly, with no allocator cache in them.

RSS includes what the allocator caches for reuse, so it understates the
difference; the allocator's figures are the activation memory itself. With a vocabulary of 50,257 the
logits (and their gradient) are a large part of it in both variants: no
block checkpoint removes them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(config_name: str, checkpointing: bool, steps: int, threads: int) -> dict:

    import attnkit
    import attnkit.nn.functional as F
    from attnkit import benchmarks
    from attnkit.models import GPT, GPTConfig

    attnkit.set_num_threads(threads)
    spec = dict(benchmarks.TRAIN_CONFIGS[config_name])
    batch = spec.pop("batch")
    config = GPTConfig(dropout=0.1, gradient_checkpointing=checkpointing, **spec)
    attnkit.manual_seed(0)
    model = GPT(config).train()
    optimizer = attnkit.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    inputs, targets = benchmarks.random_batch(config, batch)
    x, y = attnkit.tensor(inputs), attnkit.tensor(targets.reshape(-1))
    parameter_bytes = sum(p.numel() * 4 for p in model.parameters())
    samples = []
    done = {}  # id(parameter) -> gradient bytes, for the parameters backward has finished

    def sample(p):
        done[id(p)] = p.numel() * 4
        samples.append(attnkit.cpu_memory_stats()["allocated_bytes"] - sum(done.values()))

    for p in model.parameters():
        p.register_post_accumulate_grad_hook(sample)

    def step():
        # The logits are not kept in a variable: the graph holds what
        # backward needs of them, and a user's loop frees the rest.
        loss = F.cross_entropy(model(x).reshape(-1, config.vocab_size), y)
        after_forward = attnkit.cpu_memory_stats()["allocated_bytes"]
        optimizer.zero_grad()
        samples.clear()
        done.clear()
        loss.backward()
        optimizer.step()
        return loss.item(), after_forward, max(samples)

    floor = _rss_bytes() + 3 * parameter_bytes  # + AdamW's moments and the gradients
    step()  # warm-up: AdamW's state exists from here on
    optimizer.zero_grad()
    start_live = attnkit.cpu_memory_stats()["allocated_bytes"]
    times, forward_live, backward_live = [], [], []
    for _ in range(steps):
        begin = time.perf_counter()
        _, after_forward, backward_peak = step()
        times.append(time.perf_counter() - begin)
        forward_live.append(after_forward - start_live)
        backward_live.append(backward_peak - start_live)
        optimizer.zero_grad()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "checkpointing": checkpointing,
        "step_s": statistics.median(times),
        "peak_rss": peak,
        "floor_rss": floor,
        "gradient_bytes": parameter_bytes,
        "activation_rss": peak - floor,
        "saved_after_forward": max(forward_live),
        "live_in_backward_beyond_start": max(backward_live),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="B", choices=["A", "B", "tiny"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--worker", choices=["plain", "checkpointed"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.config, args.worker == "checkpointed", args.steps, args.threads)))
        return
    from attnkit import benchmarks

    facts = benchmarks.machine_facts()  # the load average at the start among them
    print(f"{facts['cpu']}, {facts['logical cpus']} logical CPUs, load average {facts['load average']}")
    runs = {"plain": [], "checkpointed": []}
    for _ in range(args.rounds):
        for variant in runs:
            command = [sys.executable, __file__, "--worker", variant, "--config", args.config]
            command += ["--threads", str(args.threads), "--steps", str(args.steps)]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            runs[variant].append(json.loads(out.strip().splitlines()[-1]))
    mib = 2**20
    summary = {}
    for variant, results in runs.items():
        summary[variant] = {
            key: statistics.median(r[key] for r in results) for key in results[0] if key != "checkpointing"
        }
    plain, ckpt = summary["plain"], summary["checkpointed"]
    print(f"GPT config {args.config}, {args.threads} threads, {args.rounds} alternating rounds, median of each")
    print(f"{'':40}{'plain':>12}{'checkpointed':>14}{'ratio':>8}")
    rows = [
        ("step time (s)", "step_s", 1.0),
        ("peak RSS (MiB)", "peak_rss", mib),
        ("floor: before a step + 3 x params (MiB)", "floor_rss", mib),
        ("gradients (MiB)", "gradient_bytes", mib),
        ("activations by RSS (MiB)", "activation_rss", mib),
        ("saved at end of forward (MiB)", "saved_after_forward", mib),
        ("live in backward - start - grads (MiB)", "live_in_backward_beyond_start", mib),
    ]
    for label, key, unit in rows:
        ratio = ckpt[key] / plain[key] if plain[key] else float("nan")
        print(f"{label:40}{plain[key] / unit:12.2f}{ckpt[key] / unit:14.2f}{ratio:8.2f}")
    print(
        f"activation memory {plain['activation_rss'] / ckpt['activation_rss']:.2f}x smaller by RSS, "
        f"{plain['saved_after_forward'] / ckpt['saved_after_forward']:.2f}x by what forward saves; "
        f"step time {ckpt['step_s'] / plain['step_s']:.2f}x"
    )
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / "bench_checkpoint.json"
    end_load = benchmarks.load_average()
    print(f"load average at the end {end_load}")
    document = {"command": " ".join(sys.argv), "machine": facts, "load average at the end": end_load}
    path.write_text(json.dumps({**document, "runs": runs, "median": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
