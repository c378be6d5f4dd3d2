"""``attnkit bench``: a compact benchmark suite that runs from an installed
wheel, with no bench/ folder.

Each row is one op or model: attnkit's time, the peer's time from the same
run (numpy for GEMM; PyTorch for the rest when it is installed, otherwise
absent), the speed-up (peer time / attnkit time: above 1, attnkit is
faster), and the fraction of the machine's limit reached, measured in the
same run by the native probes (the FP32 FMA peak for compute-bound work, the
memory bandwidth for memory-bound work). The two sides are timed in
alternating rounds, so both meet the same load from the rest of the machine,
and the median is kept.

    attnkit bench [--quick] [--threads N] [--repeats N] [--json PATH] [--no-torch]

The deeper scripts (every shape, every thread count, the native benchmark
binary) are in the repository's bench/ folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

from . import _C
from .autograd import no_grad
from .models import GPT, GPTConfig
from .nn import functional as F
from .optim import AdamW
from .random import manual_seed
from .runtime import build_info, cpu_isa, get_num_threads, set_num_threads
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


# ------------------------------------------------------------------ timing --
def timed_rounds(callables: dict, warmup: int, repeats: int) -> dict:
    """name -> the seconds of each of ``repeats`` timed calls. The callables
    run in rounds, one call of each per round, so that all of them meet the
    same load from the rest of the machine and their ratios stay meaningful
    on a noisy host; ``warmup`` untimed rounds come first. (The bench/
    scripts time with this too.)"""
    if repeats < 1:
        raise ValueError(f"timed_rounds: repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        for fn in callables.values():
            fn()
    seconds = {name: [] for name in callables}
    for _ in range(repeats):
        for name, fn in callables.items():
            start = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def time_side_by_side(callables: dict, warmup: int, repeats: int) -> dict:
    """name -> median seconds per call (``timed_rounds``)."""
    return {name: statistics.median(values) for name, values in timed_rounds(callables, warmup, repeats).items()}


def optional_torch(disabled: bool = False):
    """The torch module, or None when it is not installed (or ``disabled``).
    attnkit never depends on torch; benchmarks only compare with it."""
    if disabled:
        return None
    try:
        import torch
    except ImportError:
        return None
    return torch


# ------------------------------------------------------------------- rows --
class Suite:
    """Collects the rows; knows the machine's limits."""

    def __init__(self, threads: int, probe_mib: int, repeats: int, torch) -> None:
        self.threads = threads
        self.repeats = repeats
        self.torch = torch
        self.fma_gflops = _C.probe_fma_peak(threads, cpu_isa())
        self.copy_gbps = _C.probe_memory_bandwidth("copy", probe_mib * MIB, threads, 3)
        self.rows = []

    def add(
        self,
        op: str,
        shape: str,
        times: dict,
        peer: str,
        work: float | None = None,
        unit: str = "",
        limit: float | None = None,
    ) -> None:
        """``times``: seconds of "ours" and, when measured, of ``peer``;
        ``work`` in GFLOP or GB per call, so a time becomes ``unit``."""
        ours = times["ours"]
        peer_time = times.get(peer)
        throughput = None if work is None else work / ours
        self.rows.append(
            {
                "op": op,
                "shape": shape,
                "threads": self.threads,
                "ours_ms": ours * 1e3,
                "peer": peer,
                "peer_ms": None if peer_time is None else peer_time * 1e3,
                "speedup": None if peer_time is None else peer_time / ours,
                "throughput": throughput,
                "unit": unit,
                "fraction_of_peak": None if throughput is None or limit is None else throughput / limit,
            }
        )

    def time(self, callables: dict, warmup: int = 2, repeats: int | None = None) -> dict:
        return time_side_by_side(callables, warmup, self.repeats if repeats is None else repeats)


def bench_gemm(suite: Suite, m: int, n: int, k: int) -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    ours_a, ours_b = from_numpy(a), from_numpy(b)
    times = suite.time({"ours": lambda: F.matmul(ours_a, ours_b), "numpy": lambda: a @ b})
    suite.add("gemm", f"{m}x{k} @ {k}x{n}", times, "numpy", 2.0 * m * n * k * 1e-9, "GFLOP/s", suite.fma_gflops)


def bench_attention(suite: Suite, batch: int, heads: int, steps: int, head_dim: int) -> None:
    rng = np.random.default_rng(0)
    q, k, v, g = (rng.standard_normal((batch, steps, heads, head_dim), dtype=np.float32) for _ in range(4))
    ours_q, ours_k, ours_v = (tensor(x, requires_grad=True) for x in (q, k, v))
    ours_g = tensor(g)
    callables = {"ours": lambda: F.attention(ours_q, ours_k, ours_v, causal=True).backward(ours_g)}
    torch = suite.torch
    if torch is not None:
        # PyTorch's layout is [B, H, T, D]: converted once, before timing.
        tq, tk, tv = (torch.tensor(x).transpose(1, 2).contiguous().requires_grad_() for x in (q, k, v))
        tg = torch.tensor(g).transpose(1, 2).contiguous()
        sdpa = torch.nn.functional.scaled_dot_product_attention
        callables["torch"] = lambda: sdpa(tq, tk, tv, is_causal=True).backward(tg)
    times = suite.time(callables)
    # forward 4 B H T^2 D (two products), backward 2.5x that; causal needs half
    gflop = 3.5 * 4.0 * batch * heads * steps * steps * head_dim * 0.5 * 1e-9
    suite.add(
        "attention fwd+bwd",
        f"B{batch} H{heads} T{steps} D{head_dim} causal",
        times,
        "torch",
        gflop,
        "GFLOP/s",
        suite.fma_gflops,
    )


def bench_softmax(suite: Suite, rows: int, width: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, width), dtype=np.float32)
    ours_x = from_numpy(x)
    callables = {"ours": lambda: F.softmax(ours_x, dim=-1)}
    if suite.torch is not None:
        tx = suite.torch.tensor(x)
        callables["torch"] = lambda: suite.torch.softmax(tx, dim=-1)
    times = suite.time(callables)
    suite.add("softmax", f"{rows}x{width}", times, "torch", 8.0 * rows * width * 1e-9, "GB/s", suite.copy_gbps)


def bench_layer_norm(suite: Suite, rows: int, width: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, width), dtype=np.float32)
    weight = rng.standard_normal(width, dtype=np.float32)
    bias = rng.standard_normal(width, dtype=np.float32)
    ours_x, ours_weight, ours_bias = from_numpy(x), from_numpy(weight), from_numpy(bias)
    callables = {"ours": lambda: F.layer_norm(ours_x, (width,), ours_weight, ours_bias, 1e-5)}
    if suite.torch is not None:
        tx, tw, tb = (suite.torch.tensor(a) for a in (x, weight, bias))
        layer_norm = suite.torch.nn.functional.layer_norm
        callables["torch"] = lambda: layer_norm(tx, (width,), tw, tb, 1e-5)
    times = suite.time(callables)
    suite.add(
        "layer_norm forward", f"{rows}x{width}", times, "torch", 8.0 * rows * width * 1e-9, "GB/s", suite.copy_gbps
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


def torch_gpt_train_step(torch, model, inputs: np.ndarray, targets: np.ndarray, optimizer_kind: str = "fused"):
    """The same step for the PyTorch model (``attnkit._torch_gpt.GPT``);
    AdamW ``fused`` (PyTorch's fastest on the CPU) or ``foreach``."""
    options = {"fused": True} if optimizer_kind == "fused" else {"foreach": True}
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=LEARNING_RATE, betas=BETAS, weight_decay=WEIGHT_DECAY, **options
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


def bench_train_step(suite: Suite, name: str) -> None:
    config, batch, ours, theirs = gpt_pair(name, suite.torch)
    inputs, targets = random_batch(config, batch)
    callables = {"ours": gpt_train_step(ours, inputs, targets)}
    if theirs is not None:
        callables["torch"] = torch_gpt_train_step(suite.torch, theirs, inputs, targets)
    times = suite.time(callables, warmup=2)
    shape = f"L{config.n_layer} H{config.n_head} C{config.n_embd} T{config.block_size} B{batch} V{config.vocab_size}"
    suite.add(
        f"train step (config {name})",
        shape,
        times,
        "torch",
        train_step_flops(config, batch) * 1e-9,
        "GFLOP/s",
        suite.fma_gflops,
    )


def bench_decode(suite: Suite, name: str, new_tokens: int) -> None:
    """Greedy decoding, batch 1, one token per step through the KV caches:
    tokens/s (the time per call is for all ``new_tokens``)."""
    config, _, ours, theirs = gpt_pair(name, suite.torch)
    new_tokens = min(new_tokens, config.block_size - 1)
    prompt = np.zeros((1, 1), dtype=np.int64)
    caches = ours.make_caches(1, 1 + new_tokens)

    def ours_decode() -> None:
        with no_grad():
            for cache in caches:
                cache.reset()
            idx = tensor(prompt)
            for _ in range(new_tokens):
                logits = ours(idx, caches=caches).numpy()
                idx = tensor(logits[:, -1].argmax(axis=-1).reshape(1, 1))

    callables = {"ours": ours_decode}
    if theirs is not None:
        torch_prompt = suite.torch.from_numpy(prompt)
        torch_caches = theirs.make_caches(1, 1 + new_tokens)
        callables["torch"] = lambda: theirs.generate(torch_prompt, new_tokens, caches=torch_caches)
    times = suite.time(callables, warmup=1)
    per_token = {key: seconds / new_tokens for key, seconds in times.items()}
    suite.add(f"decode (config {name})", f"batch 1, {new_tokens} tokens", per_token, "torch")
    suite.rows[-1]["tokens_per_s"] = 1.0 / per_token["ours"]


# ------------------------------------------------------------------ table --
def format_table(rows: list) -> str:
    header = ["op", "shape", "thr", "attnkit ms", "peer", "peer ms", "speed-up", "attnkit", "of peak"]
    lines = []
    for r in rows:
        if r.get("tokens_per_s") is not None:
            rate = f"{r['tokens_per_s']:.0f} tokens/s"
        elif r["throughput"] is not None:
            rate = f"{r['throughput']:.1f} {r['unit']}"
        else:
            rate = "-"
        lines.append(
            [
                r["op"],
                r["shape"],
                str(r["threads"]),
                f"{r['ours_ms']:.3f}",
                r["peer"],
                "absent" if r["peer_ms"] is None else f"{r['peer_ms']:.3f}",
                "-" if r["speedup"] is None else f"{r['speedup']:.2f}x",
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
    parser = argparse.ArgumentParser(prog="attnkit bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes and few repeats: seconds, not a minute")
    parser.add_argument(
        "--threads",
        type=_positive,
        default=None,
        help="threads for attnkit and PyTorch (default: attnkit's current setting)",
    )
    parser.add_argument(
        "--repeats",
        type=_positive,
        default=None,
        help="timed rounds per row; the median is reported (default: 10, 3 with --quick)",
    )
    parser.add_argument("--json", metavar="PATH", default=None, help="write the figures to PATH as JSON")
    parser.add_argument("--no-torch", action="store_true", help="do not compare against PyTorch")
    args = parser.parse_args(argv)
    if "OMP_WAIT_POLICY" not in os.environ:
        return _relaunch_with_passive_threads(sys.argv[1:] if argv is None else list(argv))

    sizes = SIZES["quick" if args.quick else "full"]
    threads = args.threads or get_num_threads()
    torch = optional_torch(args.no_torch)
    previous_threads = get_num_threads()
    set_num_threads(threads)
    if torch is not None:
        previous_torch_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
    try:
        suite = Suite(threads, sizes["probe_mib"], args.repeats or sizes["repeats"], torch)
        print(
            f"attnkit bench: {threads} threads, cpu isa {cpu_isa()}, FMA peak {suite.fma_gflops:.1f} GFLOP/s, "
            f"copy bandwidth {suite.copy_gbps:.1f} GB/s"
            + ("" if torch is not None else "; PyTorch not installed: its columns are absent")
        )
        sys.stdout.flush()
        bench_gemm(suite, *sizes["gemm"])
        bench_attention(suite, *sizes["attention"])
        bench_softmax(suite, *sizes["softmax"])
        bench_layer_norm(suite, *sizes["layer_norm"])
        bench_train_step(suite, sizes["train_config"])
        bench_decode(suite, sizes["train_config"], sizes["decode_tokens"])
    finally:
        set_num_threads(previous_threads)
        if torch is not None:
            torch.set_num_threads(previous_torch_threads)

    print(format_table(suite.rows))
    print(
        "speed-up: peer ms / attnkit ms (above 1: attnkit is faster). of peak: of the FMA peak (GFLOP/s) "
        "or of the copy bandwidth (GB/s) measured above."
    )
    if args.json:
        document = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": {
                "cpu": cpu_model(),
                "logical cpus": os.cpu_count(),
                "python": platform.python_version(),
                "cpu isa": cpu_isa(),
                "compiler": build_info()["compiler"],
                "torch": None if torch is None else torch.__version__,
            },
            "threads": threads,
            "quick": args.quick,
            "fma_peak_gflops": suite.fma_gflops,
            "copy_bandwidth_gbps": suite.copy_gbps,
            "rows": suite.rows,
        }
        with open(args.json, "w") as f:
            json.dump(document, f, indent=2)
            f.write("\n")
        print(f"written to {args.json}")
    return 0


def _relaunch_with_passive_threads(argv: list) -> int:
    """Runs the suite in a child process whose OpenMP threads sleep when idle.

    attnkit's and PyTorch's OpenMP thread teams (and numpy's BLAS threads)
    live side by side in one process here. By default an idle team keeps
    spinning for a while after each call and takes the cores from the other
    library's next call: measured on 2 cores, attnkit's train step ran 6x
    slower right after PyTorch's. The wait policy is read once, when a
    runtime starts, which for attnkit was at ``import attnkit``: hence a
    fresh process, with OMP_WAIT_POLICY=PASSIVE (an explicit setting is
    respected and runs in this process).
    """
    environment = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    environment.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # numpy's BLAS threads: spin 2^4 cycles at most
    sys.stdout.flush()
    return subprocess.run([sys.executable, "-m", "attnkit.benchmarks", *argv], env=environment).returncode


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


if __name__ == "__main__":
    sys.exit(main())
