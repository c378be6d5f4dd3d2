"""``attnkit bench``: a compact benchmark suite that runs from an installed
wheel, with no bench/ folder; and the method that it and the bench/ scripts
share.

Each row is one op or model: attnkit's time, each peer's time (numpy and
PyTorch for GEMM; PyTorch for the rest, when it is installed, otherwise
absent), the speed-up (peer time / attnkit time: above 1, attnkit is
faster), and the fraction of the machine's limit that attnkit reaches (the
FP32 FMA peak for compute-bound work, the copy bandwidth for memory-bound
work), measured by attnkit's native probes in the same run.

    attnkit bench [--quick] [--threads N] [--rounds N] [--repeats N] [--json PATH] [--no-torch]

The method:
- every library runs in a process of its own, a *worker*, the way its users
  run it: its default settings, at the thread count asked for. Nothing set
  for one library (a wait policy, a thread count) applies to another;
- the workers run one at a time, never together, in rounds: each round runs
  every side once, and the order rotates from round to round, so that a slow
  spell of a shared machine meets every side;
- a worker times its calls after a warm-up and writes every call's seconds
  as JSON; a figure is the median over the rounds of each round's median,
  and its spread that of the round medians (with one round, of the calls);
- the parent measures the machine's limits and records the CPU model, the
  ISA in use, the caches, the thread counts, the versions and the date.

The deeper scripts (every shape, every thread count, the native benchmark
binary) are in the repository's bench/ folder; bench/common.py builds on the
helpers here.
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import _C
from .autograd import no_grad
from .models import GPT, GPTConfig
from .nn import functional as F
from .optim import AdamW
from .random import manual_seed
from .runtime import build_info, cpu_isa, get_num_threads, set_num_threads, supported_cpu_isas
from .tensor import from_numpy, tensor

MIB = 1 << 20

# Full and --quick sizes. The full ones are those the bench/ scripts report;
# the quick ones finish the whole suite in seconds.
SIZES = {
    "full": dict(
        gemm=(1024, 1024, 1024),
        attention=(4, 12, 256, 64),
        softmax=(2048, 4096),
        layer_norm=(8192, 768),
        train_config="A",
        decode_tokens=64,
        probe_mib=256,
        rounds=3,
        repeats=10,
    ),
    "quick": dict(
        gemm=(256, 256, 256),
        attention=(2, 4, 64, 32),
        softmax=(256, 1024),
        layer_norm=(512, 256),
        train_config="tiny",
        decode_tokens=8,
        probe_mib=64,
        rounds=1,
        repeats=3,
    ),
}

# GPT configs of the train-step row: A is nanoGPT's CPU Shakespeare config,
# B GPT-2-small dims (bench/bench_train_step.py reports both; this suite A).
TRAIN_CONFIGS = {
    "A": dict(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128, batch=12),
    "B": dict(vocab_size=50257, block_size=256, n_layer=12, n_head=12, n_embd=768, batch=4),
    "tiny": dict(vocab_size=65, block_size=16, n_layer=1, n_head=2, n_embd=32, batch=2),
}
# nanoGPT's recipe; the values do not change the cost
LEARNING_RATE, BETAS, WEIGHT_DECAY = 1e-3, (0.9, 0.99), 0.1

# The environment variables that change how a library's threads run: recorded
# with every result, since one set in the shell applies to every worker.
THREAD_SETTINGS = ("OMP_", "GOMP_", "KMP_", "OPENBLAS_", "MKL_", "ATTNKIT_")


# ------------------------------------------------------------------ timing --
# Warm-up lasts at least this long, whatever the count asked for: a fresh
# process's first tenth of a second can run a 2-thread kernel at a tenth of
# its speed (measured: 512^3 SGEMM, 4-8 slow calls after 2 warm ones).
WARMUP_MIN_S = 0.25


def timed_rounds(callables: dict, warmup: int, repeats: int) -> dict:
    """name -> the seconds of each of ``repeats`` timed calls. The callables
    run in rounds, one call of each per round, so that all of them meet the
    same load from the rest of the machine; untimed rounds come first,
    ``warmup`` of them and for WARMUP_MIN_S at least (none with ``warmup``
    0). Only callables of one library share a process (see the module
    docstring), so they share its thread pool and never fight over cores."""
    if repeats < 1:
        raise ValueError(f"timed_rounds: repeats must be >= 1, got {repeats}")
    warm_until = time.perf_counter() + (WARMUP_MIN_S if warmup > 0 else 0.0)
    done = 0
    while done < warmup or time.perf_counter() < warm_until:
        for fn in callables.values():
            fn()
        done += 1
    seconds = {name: [] for name in callables}
    for _ in range(repeats):
        for name, fn in callables.items():
            start = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - start)
    return seconds


@dataclass
class Timing:
    """Seconds per call: the median over the rounds (worker processes) of
    each round's median call, and the lowest and highest round median; with
    one round, the median, fastest and slowest call of that round."""

    median: float
    low: float
    high: float
    calls: int
    rounds: int

    @classmethod
    def of_rounds(cls, rounds: list) -> Timing:
        """From the seconds of every timed call, one list per round."""
        if not rounds or not all(rounds):
            raise ValueError(f"Timing.of_rounds: expected one non-empty list of seconds per round, got {rounds!r}")
        values = rounds[0] if len(rounds) == 1 else [statistics.median(r) for r in rounds]
        return cls(statistics.median(values), min(values), max(values), sum(map(len, rounds)), len(rounds))

    @property
    def spread(self) -> float:
        """(high - low) / median: how far to trust the median."""
        return (self.high - self.low) / self.median

    def to_json(self) -> dict:
        return {**asdict(self), "spread": self.spread}


# ---------------------------------------------------------------- workers --
class Recorder:
    """What one worker measures: ``time`` runs callables of the worker's own
    library and keeps every call's seconds, with what the parent needs to
    turn them into a row (the work per call, its unit, the kind of limit it
    meets); ``write`` hands them to the parent as JSON."""

    def __init__(self, side: str, threads: int, warmup: int, repeats: int) -> None:
        self.side, self.threads, self.warmup, self.repeats = side, threads, warmup, repeats
        self.measurements: list = []
        self.facts: dict = {}

    def time(
        self,
        op: str,
        case: str,
        callables: dict,
        *,
        work: float | None = None,
        unit: str = "",
        limit: str | None = None,
        warmup: int | None = None,
        repeats: int | None = None,
        **extra,
    ) -> dict:
        """Times ``callables`` (column name -> fn; "attnkit" is ours) and
        records them as the row (op, case) at this worker's thread count;
        ``work`` per call in ``unit`` (GFLOP/s: FLOPs; GB/s: bytes), ``limit``
        a key of ``measure_limits``; ``extra`` is kept with the row. Returns
        column -> seconds of each call."""
        seconds = timed_rounds(
            callables, self.warmup if warmup is None else warmup, self.repeats if repeats is None else repeats
        )
        for column, values in seconds.items():
            self.add(op, case, column, values, work=work, unit=unit, limit=limit, **extra)
        return seconds

    def add(
        self, op: str, case: str, column: str, seconds: list, *, work=None, unit: str = "", limit=None, **extra
    ) -> None:
        """Records seconds timed by the caller (see ``time`` for the rest)."""
        self.measurements.append(
            dict(
                op=op,
                case=case,
                threads=self.threads,
                column=column,
                work=work,
                unit=unit,
                limit=limit,
                seconds=list(seconds),
                extra=extra,
            )
        )

    def write(self, path: str) -> None:
        """The JSON the parent reads, with this process's thread settings."""
        document = {
            "side": self.side,
            "threads": self.threads,
            "thread settings": thread_settings(),
            "facts": self.facts,
            "measurements": self.measurements,
        }
        with open(path, "w") as f:
            json.dump(document, f)


def run_rounds(commands: dict, rounds: int, environments: dict | None = None) -> dict:
    """Runs each side's worker ``rounds`` times; returns side -> the JSON
    documents its workers wrote, one per round.

    ``commands``: side -> the argv of its worker, to which ``--worker-out
    PATH`` is appended. The workers run one at a time; each round runs every
    side once, starting one side later than the round before. Each worker
    gets this process's environment, plus ``environments[side]`` where given
    (a library's own thread count, say). A worker that fails stops the run."""
    if rounds < 1:
        raise ValueError(f"run_rounds: rounds must be >= 1, got {rounds}")
    sides = list(commands)
    documents = {side: [] for side in sides}
    with tempfile.TemporaryDirectory(prefix="attnkit-bench-") as folder:
        for index in range(rounds):
            start = index % len(sides)
            for side in sides[start:] + sides[:start]:
                path = os.path.join(folder, f"round{index}-side{sides.index(side)}.json")
                argv = [*commands[side], "--worker-out", path]
                environment = dict(os.environ, **(environments or {}).get(side, {}))
                sys.stdout.flush()
                sys.stderr.flush()
                status = subprocess.run(argv, env=environment).returncode
                if status != 0:
                    raise RuntimeError(f"the {side} worker failed with exit status {status}: {' '.join(argv)}")
                with open(path) as f:
                    documents[side].append(json.load(f))
    return documents


def merge_rounds(documents: dict) -> list:
    """The rows of every worker's measurements: one per (op, case, threads),
    in the order the first side measured them, with ``columns``: column ->
    Timing over the rounds. The other fields (work, unit, limit, extra) are
    those of the first side that measured the row."""
    rows: dict = {}
    for side_documents in documents.values():
        for document in side_documents:
            for m in document["measurements"]:
                row = rows.setdefault(
                    (m["op"], m["case"], m["threads"]),
                    {key: m[key] for key in ("op", "case", "threads", "work", "unit", "limit", "extra")}
                    | {"columns": {}},
                )
                row["columns"].setdefault(m["column"], []).append(m["seconds"])
    for row in rows.values():
        row["columns"] = {column: Timing.of_rounds(rounds) for column, rounds in row["columns"].items()}
    return list(rows.values())


def blas_threads_environment(threads: int) -> dict:
    """The environment that gives numpy's BLAS (OpenBLAS, or MKL) ``threads``
    threads, as a numpy user sets it; a setting of the user's own wins."""
    return {name: str(threads) for name in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS") if name not in os.environ}


def torch_installed(disabled: bool = False) -> bool:
    """Whether PyTorch can be imported (without importing it)."""
    return not disabled and importlib.util.find_spec("torch") is not None


def optional_torch(disabled: bool = False):
    """The torch module, or None when it is not installed (or ``disabled``).
    attnkit never depends on torch; benchmarks only compare with it."""
    if not torch_installed(disabled):
        return None
    import torch

    return torch


# ---------------------------------------------------------------- machine --
LIMIT_NAMES = {
    "fma": "FMA peak",
    "read": "read bandwidth",
    "write": "write bandwidth",
    "copy": "copy bandwidth",
    "triad": "triad bandwidth",
}


def measure_limits(threads: int, probe_mib: int, repeats: int = 3) -> dict:
    """The machine's limits at ``threads`` threads, by attnkit's native
    probes: "fma", the FP32 GFLOP/s of independent FMA chains with the active
    ISA's kernels; "read", "write", "copy", "triad", the GB/s of STREAM-style
    passes over ``probe_mib`` MiB (keep it far above the L3)."""
    limits = {"fma": _C.probe_fma_peak(threads, cpu_isa())}
    for kind in ("read", "write", "copy", "triad"):
        limits[kind] = _C.probe_memory_bandwidth(kind, probe_mib * MIB, threads, repeats)
    return limits


def cpu_model() -> str:
    """The CPU's model name, as /proc/cpuinfo gives it where there is one."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _sysfs_caches() -> list:
    """(name, size text, CPUs sharing it) of each cache of CPU 0 in sysfs."""
    caches = []
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level, kind, size, shared = (
                (index / name).read_text().strip() for name in ("level", "type", "size", "shared_cpu_list")
            )
        except OSError:
            continue
        caches.append((f"L{level}" + {"Data": "d", "Instruction": "i"}.get(kind, ""), size, shared))
    return caches


def cache_sizes() -> dict:
    """The caches of CPU 0 as Linux reports them in sysfs: "L1d", "L1i",
    "L2", "L3" -> size ("2048K") and the CPUs sharing it; {} without sysfs.
    (In a virtual machine these are what the hypervisor reports.)"""
    return {name: f"{size} (cpus {shared})" for name, size, shared in _sysfs_caches()}


def cache_bytes(name: str) -> int | None:
    """The size in bytes of the cache ``name`` ("L2", "L3") of CPU 0, or None."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    for cache, size, _ in _sysfs_caches():
        if cache == name:
            return int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
    return None


def versions() -> dict:
    """Python's and the libraries' versions (None: not installed); read from
    the package metadata, so that no library is imported for it."""
    found = {"python": platform.python_version(), "attnkit": build_info()["version"]}
    for package in ("numpy", "torch", "threadpoolctl"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def machine_facts() -> dict:
    """What a reader needs to compare figures across machines."""
    return {
        "cpu": cpu_model(),
        "logical cpus": os.cpu_count(),
        "caches": cache_sizes(),
        "cpu isa": cpu_isa(),
        "gemm blocking": _C.gemm_config(),
        "supported isas": supported_cpu_isas(),
        "compiler": build_info()["compiler"],
        "os": platform.platform(),
        "versions": versions(),
        "thread settings": thread_settings(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "load average": load_average(),
    }


def load_average() -> list | None:
    """The 1-, 5- and 15-minute load averages (None where the OS has none):
    on a machine shared with other work, how far to trust the figures."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def thread_settings() -> dict:
    """The environment variables of THREAD_SETTINGS that this process has."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith(THREAD_SETTINGS)}


def describe_machine(facts: dict, limits: dict) -> str:
    """The facts and the limits (threads -> measure_limits) in a few lines."""
    library_versions = ", ".join(f"{k} {v}" for k, v in facts["versions"].items() if v is not None)
    lines = [
        f"cpu: {facts['cpu']} ({facts['logical cpus']} logical cpus), isa in use: {facts['cpu isa']} "
        f"(supported: {' '.join(facts['supported isas'])}), {facts['os']}",
        "caches: " + ", ".join(f"{k} {v}" for k, v in facts["caches"].items()),
        "gemm: tile {mr}x{nr}, blocks MC {mc} KC {kc} NC {nc}".format(**facts["gemm blocking"]),
        f"versions: {library_versions}; compiler {facts['compiler']}; {facts['date']}, load average "
        f"{facts['load average']}",
        "thread settings: " + (" ".join(f"{k}={v}" for k, v in facts["thread settings"].items()) or "defaults"),
    ]
    for threads, limit in limits.items():
        lines.append(
            f"limits at {threads} thread(s): FMA peak {limit['fma']:.1f} GFLOP/s; GB/s "
            + ", ".join(f"{kind} {limit[kind]:.1f}" for kind in ("read", "write", "copy", "triad"))
        )
    return "\n".join(lines)


# ------------------------------------------------------------- the suite --
# Each bench_* function records its row on the worker's side: ours on the
# "attnkit" worker, the peers' on theirs (a side with nothing for the row
# records nothing). ``peers`` lists the peer columns the row compares with.


def bench_gemm(recorder: Recorder, side: str, torch, m: int, n: int, k: int) -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    if side == "attnkit":
        fn = functools.partial(F.matmul, from_numpy(a), from_numpy(b))
    elif side == "numpy":
        fn = functools.partial(np.matmul, a, b)
    else:
        fn = functools.partial(torch.matmul, torch.from_numpy(a), torch.from_numpy(b))
    recorder.time(
        "gemm",
        f"{m}x{k} @ {k}x{n}",
        {side: fn},
        work=2.0 * m * n * k,
        unit="GFLOP/s",
        limit="fma",
        peers=["numpy", "torch"],
    )


def bench_attention(recorder: Recorder, side: str, torch, batch: int, heads: int, steps: int, head_dim: int) -> None:
    if side == "numpy":
        return
    rng = np.random.default_rng(0)
    q, k, v, g = (rng.standard_normal((batch, steps, heads, head_dim), dtype=np.float32) for _ in range(4))
    if side == "attnkit":
        ours_q, ours_k, ours_v = (tensor(x, requires_grad=True) for x in (q, k, v))
        ours_g = tensor(g)

        def fn():
            F.attention(ours_q, ours_k, ours_v, causal=True).backward(ours_g)

    else:
        # PyTorch's layout is [B, H, T, D]: converted once, before timing.
        tq, tk, tv = (torch.tensor(x).transpose(1, 2).contiguous().requires_grad_() for x in (q, k, v))
        tg = torch.tensor(g).transpose(1, 2).contiguous()
        sdpa = torch.nn.functional.scaled_dot_product_attention

        def fn():
            sdpa(tq, tk, tv, is_causal=True).backward(tg)

    # forward 4 B H T^2 D (two products), backward 2.5x that; causal needs half
    flops = 3.5 * 4.0 * batch * heads * steps * steps * head_dim * 0.5
    shape = f"B{batch} H{heads} T{steps} D{head_dim} causal"
    recorder.time("attention fwd+bwd", shape, {side: fn}, work=flops, unit="GFLOP/s", limit="fma", peers=["torch"])


def bench_softmax(recorder: Recorder, side: str, torch, rows: int, width: int) -> None:
    if side == "numpy":
        return
    x = np.random.default_rng(0).standard_normal((rows, width), dtype=np.float32)
    if side == "attnkit":
        fn = functools.partial(F.softmax, from_numpy(x), dim=-1)
    else:
        fn = functools.partial(torch.softmax, torch.from_numpy(x), dim=-1)
    recorder.time(
        "softmax", f"{rows}x{width}", {side: fn}, work=8.0 * rows * width, unit="GB/s", limit="copy", peers=["torch"]
    )


def bench_layer_norm(recorder: Recorder, side: str, torch, rows: int, width: int) -> None:
    if side == "numpy":
        return
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, width), dtype=np.float32)
    weight = rng.standard_normal(width, dtype=np.float32)
    bias = rng.standard_normal(width, dtype=np.float32)
    if side == "attnkit":
        fn = functools.partial(F.layer_norm, from_numpy(x), (width,), from_numpy(weight), from_numpy(bias), 1e-5)
    else:
        tx, tw, tb = (torch.from_numpy(a) for a in (x, weight, bias))
        fn = functools.partial(torch.nn.functional.layer_norm, tx, (width,), tw, tb, 1e-5)
    recorder.time(
        "layer_norm forward",
        f"{rows}x{width}",
        {side: fn},
        work=8.0 * rows * width,
        unit="GB/s",
        limit="copy",
        peers=["torch"],
    )


def gpt_train_step(model, inputs: np.ndarray, targets: np.ndarray):
    """() -> loss: one attnkit training step of ``model`` (forward,
    cross-entropy, backward, AdamW, zero_grad, loss.item()) on one batch."""
    optimizer = AdamW(model.parameters(), lr=LEARNING_RATE, betas=BETAS, weight_decay=WEIGHT_DECAY)
    x, y = tensor(inputs), tensor(targets)
    vocab = model.config.vocab_size

    def step() -> float:
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return loss.item()

    return step


# PyTorch's AdamW forms on the CPU: "default" is what torch.optim.AdamW gives
# without options (the per-parameter loop: foreach is a CUDA default); "fused"
# (fused=True) is its fastest documented form there.
TORCH_OPTIMIZERS = {"default": {}, "fused": {"fused": True}, "foreach": {"foreach": True}}


def torch_gpt_train_step(torch, model, inputs: np.ndarray, targets: np.ndarray, optimizer_kind: str = "default"):
    """The same step for the PyTorch model (``attnkit._torch_gpt.GPT``), with
    the AdamW form ``optimizer_kind`` of TORCH_OPTIMIZERS."""
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=LEARNING_RATE,
        betas=BETAS,
        weight_decay=WEIGHT_DECAY,
        **TORCH_OPTIMIZERS[optimizer_kind],
    )
    x, y = torch.from_numpy(inputs), torch.from_numpy(targets)
    vocab = model.config.vocab_size
    cross_entropy = torch.nn.functional.cross_entropy

    def step() -> float:
        logits = model(x)
        loss = cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    return step


def train_step_flops(config, batch: int) -> float:
    """FLOPs of one GPT training step: the matrix products (2 per
    multiply-add; backward twice the forward) and causal attention's needed
    half (forward 4 B T^2 C per layer, backward 2.5x that)."""
    tokens = batch * config.block_size
    width = config.n_embd
    matrix_parameters = 12 * config.n_layer * width * width + config.vocab_size * width
    attention_forward = config.n_layer * 4.0 * batch * config.block_size**2 * width * 0.5
    return 3 * 2.0 * tokens * matrix_parameters + 3.5 * attention_forward


def gpt_pair(name: str, torch):
    """(config, batch, model, torch model): an attnkit GPT of the named
    TRAIN_CONFIGS entry, and the same weights in PyTorch (None without torch)."""
    spec = dict(TRAIN_CONFIGS[name])
    batch = spec.pop("batch")
    config = GPTConfig(dropout=0.0, **spec)
    manual_seed(0)
    ours = GPT(config)
    theirs = None
    if torch is not None:
        from . import _torch_gpt

        theirs = _torch_gpt.GPT(config)
        _torch_gpt.copy_from_attnkit(theirs, ours)
    return config, batch, ours, theirs


def random_batch(config, batch: int) -> tuple:
    """(inputs, targets): int64 numpy token ids [batch, block_size], the same every call."""
    rng = np.random.default_rng(0)
    inputs = rng.integers(0, config.vocab_size, size=(batch, config.block_size), dtype=np.int64)
    targets = rng.integers(0, config.vocab_size, size=(batch, config.block_size), dtype=np.int64)
    return inputs, targets


def bench_train_step(recorder: Recorder, side: str, torch, name: str) -> None:
    if side == "numpy":
        return
    config, batch, ours, theirs = gpt_pair(name, torch)
    inputs, targets = random_batch(config, batch)
    if side == "attnkit":
        callables = {"attnkit": gpt_train_step(ours, inputs, targets)}
    else:
        callables = {
            "torch": torch_gpt_train_step(torch, theirs, inputs, targets, "default"),
            "torch fused AdamW": torch_gpt_train_step(torch, theirs, inputs, targets, "fused"),
        }
    shape = f"L{config.n_layer} H{config.n_head} C{config.n_embd} T{config.block_size} B{batch} V{config.vocab_size}"
    recorder.time(
        f"train step (config {name})",
        shape,
        callables,
        work=train_step_flops(config, batch),
        unit="GFLOP/s",
        limit="fma",
        peers=["torch", "torch fused AdamW"],
    )


def bench_decode(recorder: Recorder, side: str, torch, name: str, new_tokens: int) -> None:
    """Greedy decoding, batch 1, one token per step through the KV caches;
    the row's time is per token."""
    if side == "numpy":
        return
    config, _, ours, theirs = gpt_pair(name, torch)
    new_tokens = min(new_tokens, config.block_size - 1)
    prompt = np.zeros((1, 1), dtype=np.int64)
    if side == "attnkit":
        caches = ours.make_caches(1, 1 + new_tokens)

        def fn() -> None:
            with no_grad():
                for cache in caches:
                    cache.reset()
                idx = tensor(prompt)
                for _ in range(new_tokens):
                    logits = ours(idx, caches=caches).numpy()
                    idx = tensor(logits[:, -1].argmax(axis=-1).reshape(1, 1))

    else:
        torch_prompt = torch.from_numpy(prompt)
        fn = functools.partial(theirs.generate, torch_prompt, new_tokens, caches=theirs.make_caches(1, 1 + new_tokens))
    recorder.time(
        f"decode (config {name})",
        f"batch 1, {new_tokens} tokens",
        {side: fn},
        warmup=1,
        peers=["torch"],
        per_call=new_tokens,
    )


def run_worker(args, sizes: dict) -> None:
    """One side's process: its library at ``args.threads`` threads, every row."""
    side, threads = args.worker, args.threads
    torch = None
    if side == "torch":
        import torch

        torch.set_num_threads(threads)
    elif side == "attnkit":
        set_num_threads(threads)
    recorder = Recorder(side, threads, warmup=2, repeats=args.repeats or sizes["repeats"])
    bench_gemm(recorder, side, torch, *sizes["gemm"])
    bench_attention(recorder, side, torch, *sizes["attention"])
    bench_softmax(recorder, side, torch, *sizes["softmax"])
    bench_layer_norm(recorder, side, torch, *sizes["layer_norm"])
    bench_train_step(recorder, side, torch, sizes["train_config"])
    bench_decode(recorder, side, torch, sizes["train_config"], sizes["decode_tokens"])
    recorder.write(args.worker_out)


# ------------------------------------------------------------------ table --
def table_rows(merged: list, limit: dict) -> list:
    """One line per (row, peer) of ``merge_rounds``'s rows, as JSON-ready
    dicts; an absent peer keeps its line, with no time."""
    lines = []
    for row in merged:
        per_call = row["extra"].get("per_call", 1)
        ours = row["columns"]["attnkit"]
        throughput = None if row["work"] is None else row["work"] / ours.median * 1e-9
        for peer in row["extra"]["peers"]:
            theirs = row["columns"].get(peer)
            lines.append(
                {
                    "op": row["op"],
                    "shape": row["case"],
                    "threads": row["threads"],
                    "ours_ms": ours.median / per_call * 1e3,
                    "ours_spread": ours.spread,
                    "peer": peer,
                    "peer_ms": None if theirs is None else theirs.median / per_call * 1e3,
                    "peer_spread": None if theirs is None else theirs.spread,
                    "speedup": None if theirs is None else theirs.median / ours.median,
                    "throughput": throughput,
                    "unit": row["unit"],
                    "fraction_of_peak": None if throughput is None else throughput / limit[row["limit"]],
                    "tokens_per_s": per_call / ours.median if "per_call" in row["extra"] else None,
                    "rounds": ours.rounds,
                }
            )
    return lines


def format_table(rows: list) -> str:
    header = ["op", "shape", "thr", "attnkit ms", "±", "peer", "peer ms", "±", "speed-up", "attnkit", "of peak"]
    lines = []
    for r in rows:
        if r.get("tokens_per_s") is not None:
            rate = f"{r['tokens_per_s']:.0f} tokens/s"
        elif r["throughput"] is not None:
            rate = f"{r['throughput']:.1f} {r['unit']}"
        else:
            rate = "-"
        absent = r["peer_ms"] is None
        lines.append(
            [
                r["op"],
                r["shape"],
                str(r["threads"]),
                f"{r['ours_ms']:.3f}",
                f"{50 * r['ours_spread']:.0f}%",
                r["peer"],
                "absent" if absent else f"{r['peer_ms']:.3f}",
                "" if absent else f"{50 * r['peer_spread']:.0f}%",
                "-" if absent else f"{r['speedup']:.2f}x",
                rate,
                "-" if r["fraction_of_peak"] is None else f"{r['fraction_of_peak']:.0%}",
            ]
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]
    text = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    text += ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    return "\n".join(text)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def main(argv=None) -> int:
    """Runs the suite, prints the table (and writes ``--json``); returns 0."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="attnkit bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, one round: seconds, not minutes")
    parser.add_argument(
        "--threads",
        type=_positive,
        default=None,
        help="threads for every library (default: attnkit's current setting)",
    )
    parser.add_argument(
        "--rounds",
        type=_positive,
        default=None,
        help="worker processes per library, run in alternating rounds (default: 3, 1 with --quick)",
    )
    parser.add_argument(
        "--repeats",
        type=_positive,
        default=None,
        help="timed calls per row in each worker; the median is kept (default: 10, 3 with --quick)",
    )
    parser.add_argument("--json", metavar="PATH", default=None, help="write the figures to PATH as JSON")
    parser.add_argument("--no-torch", action="store_true", help="do not compare against PyTorch")
    parser.add_argument("--worker", choices=["attnkit", "numpy", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = SIZES["quick" if args.quick else "full"]
    if args.worker:
        run_worker(args, sizes)
        return 0

    threads = args.threads or get_num_threads()
    rounds = args.rounds or sizes["rounds"]
    sides = ["attnkit", "numpy"] + (["torch"] if torch_installed(args.no_torch) else [])
    facts = machine_facts()
    limit = measure_limits(threads, sizes["probe_mib"])
    print(f"attnkit bench: {threads} threads, {rounds} round(s) of {', '.join(sides)} processes")
    print(describe_machine(facts, {threads: limit}))
    if "torch" not in sides:
        print("PyTorch is not installed (or --no-torch): its columns are absent")
    worker = [sys.executable, "-m", "attnkit.benchmarks", *argv, "--threads", str(threads)]
    documents = run_rounds(
        {side: [*worker, "--worker", side] for side in sides},
        rounds,
        {"numpy": blas_threads_environment(threads)},
    )
    rows = table_rows(merge_rounds(documents), limit)

    print(format_table(rows))
    print(
        "speed-up: peer ms / attnkit ms (above 1: attnkit is faster); ±: half the spread over the rounds "
        "(of the calls with one round). of peak: of the FMA peak (GFLOP/s) or of the copy bandwidth (GB/s)."
    )
    if args.json:
        document = {
            "command": " ".join(["attnkit bench", *argv]),
            "machine": facts,
            "limits": limit,
            "threads": threads,
            "rounds": rounds,
            "quick": args.quick,
            "fma_peak_gflops": limit["fma"],
            "copy_bandwidth_gbps": limit["copy"],
            "worker thread settings": {side: docs[0]["thread settings"] for side, docs in documents.items()},
            "load average at the end": load_average(),
            "rows": rows,
        }
        with open(args.json, "w") as f:
            json.dump(document, f, indent=2)
            f.write("\n")
        print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
