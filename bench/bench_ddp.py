"""Data-parallel training on MPI: one rank of 2 threads against 2 ranks of 1 thread.

    python bench/bench_ddp.py [--config B] [--rounds 3] [--warmup 1] [--bucket-mb 25]

Run it as a plain command: it launches ``mpiexec -n 2`` (the one next to
this Python, which ``pip install "attnkit[mpi]"`` brings) for the timed part
and for mpi4py's own ping-pong benchmark.

In one 2-rank job, in alternating rounds (so every variant meets the same
load from the rest of the machine), each a training step of the config's
GPT on its global batch (forward, cross-entropy, backward, AdamW, zero_grad):

- 1 rank x 2 threads: rank 0 alone steps the whole batch (rank 1 waits,
  asleep);
- 2 ranks x 1 thread, DDP: DistributedDataParallel, half the batch each;
- 2 ranks x 1 thread, no_sync: the same with the gradient averaging turned
  off, what the ranks' compute alone takes;
- 2 ranks x 1 thread, ZeRO-1: DDP with ZeroRedundancyOptimizer (each rank
  steps half the parameters, then broadcasts them).

Communication, in the same job:
- the gradient all-reduce alone: DDP's buckets reduced back to back with no
  compute (``comm alone``); the hidden fraction is 1 - (DDP's wait after the
  last gradient of backward) / (comm alone), and by step time 1 - (DDP -
  no_sync) / (comm alone);
- all-reduce bandwidth of attnkit.distributed.all_reduce on a tensor and of
  mpi4py's blocking ``Allreduce`` on a numpy array (as osu_allreduce times
  MPI_Allreduce) at a bucket's size and above (``--sizes-mib``), as bus
  bandwidth: 2 (N - 1) / N x bytes / seconds, the bytes each rank sends and
  receives in a ring all-reduce;
- ``python -m mpi4py.bench pingpong`` (mpi4py's osu_bw-style point-to-point
  test) at the same sizes: the link's bandwidth, which a ring all-reduce's bus
  bandwidth approaches.

Results go to bench/results/bench_ddp.json; bench/README.md has the
measured figures and the scaling estimate built on them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
import numpy as np

import attnkit
import attnkit.distributed as dist
from attnkit import benchmarks
from attnkit.distributed import collectives, world
from attnkit.nn import functional as F
from attnkit.nn.parallel import DistributedDataParallel
from attnkit.optim import AdamW, ZeroRedundancyOptimizer

RANKS = 2
VARIANTS = (
    "1 rank x 2 threads",
    "2 ranks x 1 thread, DDP",
    "2 ranks x 1 thread, no_sync",
    "2 ranks x 1 thread, ZeRO-1",
)


def _bus_bandwidth(nbytes: int, seconds: float, ranks: int = RANKS) -> float:
    """GB/s each rank moves in a ring all-reduce of ``nbytes``."""
    return 2 * (ranks - 1) / ranks * nbytes / seconds * 1e-9


# ------------------------------------------------------------------ ranks ---


def run_ranks(args) -> None:
    """The timed job, on every rank; rank 0 writes the figures to args.out."""
    rank, size = dist.init()
    config, batch, model, _ = benchmarks.gpt_pair(args.config, None)
    inputs, targets = benchmarks.random_batch(config, batch)
    share = batch // size
    whole = (attnkit.tensor(inputs), attnkit.tensor(targets))
    rows = slice(rank * share, (rank + 1) * share)
    mine = (attnkit.tensor(inputs[rows]), attnkit.tensor(targets[rows]))
    hyper = dict(lr=benchmarks.LEARNING_RATE, betas=benchmarks.BETAS, weight_decay=benchmarks.WEIGHT_DECAY)
    adamw = AdamW(model.parameters(), **hyper)
    ddp = DistributedDataParallel(model, bucket_mb=args.bucket_mb)
    zero = ZeroRedundancyOptimizer(model.parameters(), AdamW, **hyper)

    def step(forward, data, optimizer) -> None:
        x, y = data
        logits = forward(x)
        loss = F.cross_entropy(logits.reshape(-1, config.vocab_size), y.reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        loss.item()

    def single() -> None:
        if rank == 0:
            attnkit.set_num_threads(2)
            step(model, whole, adamw)

    def data_parallel(optimizer, sync: bool = True) -> None:
        attnkit.set_num_threads(1)
        if sync:
            step(ddp, mine, optimizer)
        else:
            with ddp.no_sync():
                step(ddp, mine, optimizer)

    variants = dict(
        zip(
            VARIANTS,
            (
                single,
                lambda: data_parallel(adamw),
                lambda: data_parallel(adamw, sync=False),
                lambda: data_parallel(zero),
            ),
        )
    )
    seconds = {name: [] for name in variants}
    waits = {name: [] for name in variants}
    for round_index in range(args.warmup + args.rounds):
        for name, fn in variants.items():
            dist.barrier()
            start = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - start
            dist.barrier()
            if round_index >= args.warmup:
                seconds[name].append(elapsed)
                waits[name].append(ddp.comm_wait_s)

    # The gradient all-reduce alone: DDP's buckets, started back to back, no compute.
    buckets = [np.zeros(n, np.float32) for n in ddp.bucket_sizes]
    alone = []
    for _ in range(args.warmup + args.rounds):
        dist.barrier()
        start = time.perf_counter()
        world.wait([collectives.start_all_reduce_sum(b) for b in buckets], "the benchmark's all-reduce")
        alone.append(time.perf_counter() - start)
    alone = alone[args.warmup :]

    # One buffer through attnkit and through mpi4py's blocking Allreduce, in alternating rounds.
    MPI = world._world.MPI
    bandwidth = {}
    for nbytes in (mib * common.MIB for mib in args.sizes_mib):
        ours = attnkit.zeros(nbytes // 4)
        theirs = np.zeros(nbytes // 4, np.float32)
        repeats = max(3, min(20, int(2e9 // nbytes)))
        times = {"attnkit": [], "mpi4py": []}
        for index in range(1 + repeats):
            for name in times:
                dist.barrier()
                start = time.perf_counter()
                if name == "attnkit":
                    dist.all_reduce(ours)
                else:
                    world._world.comm.Allreduce(MPI.IN_PLACE, [theirs, MPI.FLOAT], op=MPI.SUM)
                if index:
                    times[name].append(time.perf_counter() - start)
        bandwidth[nbytes] = {name: statistics.median(t) for name, t in times.items()}

    if rank == 0:
        parameters = sum(p.numel() for p in model.parameters())
        figures = {
            "config": args.config,
            "global_batch": batch,
            "block": config.block_size,
            "parameters": parameters,
            "step_gflop": benchmarks.train_step_flops(config, batch) * 1e-9,
            "bucket_mb": args.bucket_mb,
            "buckets": len(ddp.bucket_sizes),
            "gradient_bytes": 4 * sum(ddp.bucket_sizes),
            "step_s": {name: statistics.median(t) for name, t in seconds.items()},
            "step_s_all": seconds,
            "comm_wait_s": {name: statistics.median(waits[name]) for name in VARIANTS[1::2]},
            "comm_alone_s": statistics.median(alone),
            "zero_state_numel": zero.local_state_numel(),
            "adamw_state_numel": 2 * parameters,
            "allreduce_s": {str(n): v for n, v in bandwidth.items()},
        }
        with open(args.out, "w") as f:
            json.dump(figures, f)


# ----------------------------------------------------------------- driver ---


def mpiexec() -> str:
    path = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if not os.access(path, os.X_OK):
        sys.exit('bench_ddp: no mpiexec next to this Python; pip install "attnkit[mpi]" brings one')
    return path


def pingpong_bandwidth(nbytes: int) -> float:
    """GB/s of mpi4py's ping-pong benchmark (osu_bw style) at ``nbytes``."""
    output = subprocess.run(
        [mpiexec(), "-n", "2", sys.executable, "-m", "mpi4py.bench", "pingpong", "-m", str(nbytes), "-n", str(nbytes)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    for line in output.splitlines():
        fields = re.split(r"[\s|]+", line.strip())
        if fields and fields[0] == str(nbytes):
            return float(fields[1]) * 1e-3  # MB/s
    raise RuntimeError(f"bench_ddp: no {nbytes}-byte line in mpi4py's ping-pong output:\n{output}")


def load_average() -> float:
    return os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="B", choices=sorted(benchmarks.TRAIN_CONFIGS), help="(default: B)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds; medians are reported (default: 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default: 1)")
    parser.add_argument("--bucket-mb", type=float, default=25.0, help="DDP's bucket size in MiB (default: 25)")
    parser.add_argument(
        "--sizes-mib",
        type=int,
        nargs="+",
        default=[1, 32, 512],
        help="all-reduce and ping-pong sizes in MiB, powers of two as mpi4py's ping-pong takes (default: 1 32 512)",
    )
    parser.add_argument("--ranks-job", metavar="OUT", help=argparse.SUPPRESS)  # what mpiexec runs
    args = parser.parse_args()
    if any(mib < 1 or mib & (mib - 1) for mib in args.sizes_mib):
        parser.error(f"--sizes-mib expected powers of two, got {args.sizes_mib}")
    if args.ranks_job:
        args.out = args.ranks_job
        run_ranks(args)
        return

    load_before = load_average()
    with tempfile.TemporaryDirectory() as scratch:
        out = os.path.join(scratch, "figures.json")
        command = [mpiexec(), "-n", str(RANKS), sys.executable, os.path.abspath(__file__), "--ranks-job", out]
        command += ["--config", args.config, "--rounds", str(args.rounds), "--warmup", str(args.warmup)]
        command += ["--bucket-mb", str(args.bucket_mb), "--sizes-mib", *map(str, args.sizes_mib)]
        subprocess.run(command, check=True, env=dict(os.environ, OMP_NUM_THREADS="2"))
        with open(out) as f:
            figures = json.load(f)
    pingpong = {n: pingpong_bandwidth(int(n)) for n in figures["allreduce_s"]}
    figures["pingpong_gbps"] = pingpong
    figures["load_average"] = [load_before, load_average()]

    step = figures["step_s"]
    single, ddp, no_sync, zero = (step[name] for name in VARIANTS)
    alone = figures["comm_alone_s"]
    wait = figures["comm_wait_s"][VARIANTS[1]]
    figures["hidden_fraction_by_wait"] = 1 - wait / alone
    figures["hidden_fraction_by_step"] = 1 - (ddp - no_sync) / alone
    print(
        f"\nconfig {figures['config']}: {figures['parameters'] / 1e6:.1f}M parameters, global batch "
        f"{figures['global_batch']} x {figures['block']} tokens, {figures['step_gflop']:.0f} GFLOP a step; "
        f"medians of {args.rounds} rounds; load average {load_before:.2f} before, "
        f"{figures['load_average'][1]:.2f} after"
    )
    print(f"\n{'step':<30} {'seconds':>8} {'vs 1 rank':>10}")
    for name in VARIANTS:
        print(f"{name:<30} {step[name]:8.3f} {single / step[name]:9.2f}x")
    gradient = figures["gradient_bytes"]
    print(
        f"\ngradient all-reduce ({figures['buckets']} buckets of {args.bucket_mb:g} MiB, "
        f"{gradient / common.MIB:.0f} MiB):"
        f" alone {alone:.3f} s ({_bus_bandwidth(gradient, alone):.2f} GB/s bus);"
        f" DDP waited {wait:.3f} s after backward: {figures['hidden_fraction_by_wait']:.0%} hidden;"
        f" by step time (DDP - no_sync = {ddp - no_sync:.3f} s): {figures['hidden_fraction_by_step']:.0%} hidden"
    )
    print(
        f"ZeRO-1: optimizer state {figures['zero_state_numel'] / 1e6:.1f}M floats on rank 0 "
        f"against {figures['adamw_state_numel'] / 1e6:.1f}M for AdamW; step {zero:.3f} s against DDP's {ddp:.3f} s"
    )
    print(
        f"\n{'all-reduce':<12} {'attnkit GB/s':>13} {'mpi4py GB/s':>12} {'attnkit/mpi4py':>15} {'ping-pong GB/s':>15}"
    )
    for n, times in figures["allreduce_s"].items():
        ours, theirs = (_bus_bandwidth(int(n), times[k]) for k in ("attnkit", "mpi4py"))
        print(f"{int(n) / common.MIB:8.0f} MiB {ours:13.2f} {theirs:12.2f} {ours / theirs:15.2f} {pingpong[n]:15.2f}")
    print("\nbus bandwidth: 2 (N - 1) / N x bytes / seconds. ping-pong: python -m mpi4py.bench pingpong at that size.")

    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = common.RESULTS_DIR / "bench_ddp.json"
    figures.update(
        command=" ".join([Path(sys.executable).name] + sys.argv),
        time=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        machine=benchmarks.machine_facts(),
    )
    path.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
