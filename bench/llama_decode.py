"""Decoding with a Llama-family checkpoint: attnkit against Hugging Face
transformers, and the time to load the checkpoint against the time to read
its files.

    python bench/bench_decode.py --models qwen2-0.5b [--threads 2] [--rounds 3] [--repeats 2] [--new-tokens 64]
    python bench/llama_decode.py [same options] [--load-only | --decode-only]

The model: Qwen2-0.5B's dimensions (24 blocks of width 896, 14 query heads
and 2 key/value heads of 64, SwiGLU 4864, q/k/v biases, a tied head over
151,936 tokens: 494M parameters) with transformers' random initialization
(seed 0), saved by transformers as float32 (1.98 GB) and as bfloat16
(0.99 GB) safetensors in ``--checkpoint-dir`` (made once, reused).

Decode: batch 1, a 16-token prompt, ``--new-tokens`` greedy tokens with
the KV cache. attnkit: ``from_pretrained(dir).generate(prompt, n,
temperature=0, stop_tokens=[])``; transformers: ``AutoModelForCausalLM.
from_pretrained(dir).generate(ids, max_new_tokens=n, do_sample=False)``
with its default settings (no eos, so both write all n tokens). Each
library runs in worker processes of its own (nothing shared, each with its
own thread settings: ``attnkit.set_num_threads`` and ``torch.set_num_threads``
at ``--threads``), ``--rounds`` rounds alternating which goes first, each
worker timing ``--repeats`` calls after one untimed call. Reported: the
medians, per token, over all timed calls; whether both wrote the same tokens.

The float32 checkpoint is the comparison at equal precision. transformers
loads the bfloat16 checkpoint in bfloat16 by default (``dtype="auto"``);
that run is reported too, as its users would run it, while attnkit computes
in float32 (bf16 compute is a later issue).

The bound: a decoding step reads every weight once (the embedding twice:
one row for the input, all of it for the tied head) and the cached keys and
values so far; those bytes over the read bandwidth of attnkit's native probe
(``_C.probe_memory_bandwidth``, at the same thread count, in each attnkit
worker just before and after its timed calls, so under the same load) give
the fastest a step can be.

Load: in one worker process per round, the checkpoint's files read once
into a buffer (``readinto``; the page cache warm, as it is for the load
right after), then ``from_pretrained``. A float32 checkpoint is memory-mapped,
so its load returns before the pages are read: for it the table also gives
the load followed by touching every weight page once.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DIR = Path(os.environ.get("TMPDIR", "/tmp")) / "attnkit-bench-qwen2-0.5b"
PROMPT_TOKENS = 16

# Qwen2-0.5B's config.json, without its tokenizer ids.
QWEN2_0_5B = dict(
    vocab_size=151936,
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    max_position_embeddings=32768,
    rope_theta=1000000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
    use_sliding_window=False,
    bos_token_id=None,
    eos_token_id=None,
    pad_token_id=None,
)


# ---------------------------------------------------------- checkpoints ---


def make_checkpoints(directory: Path) -> dict:
    """{"float32": dir, "bfloat16": dir}, made by transformers once."""
    paths = {dtype: directory / dtype for dtype in ("float32", "bfloat16")}
    if all((path / "config.json").exists() for path in paths.values()):
        return paths
    import torch
    import transformers

    torch.manual_seed(0)
    print(f"making the random Qwen2-0.5B-dims checkpoints in {directory} (once) ...", flush=True)
    model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**QWEN2_0_5B)).eval()
    model.save_pretrained(paths["float32"])
    model.to(torch.bfloat16).save_pretrained(paths["bfloat16"])
    return paths


def checkpoint_files(path: Path) -> list:
    return sorted(glob.glob(str(path / "*.safetensors")))


def prompt_ids() -> list:
    import random

    generator = random.Random(0)
    return [generator.randrange(QWEN2_0_5B["vocab_size"]) for _ in range(PROMPT_TOKENS)]


# -------------------------------------------------------------- workers ---


def attnkit_worker(args) -> dict:
    import attnkit
    from attnkit.models import from_pretrained

    attnkit.set_num_threads(args.threads)
    start = time.perf_counter()
    model = from_pretrained(args.checkpoint)
    load = time.perf_counter() - start
    prompt = [prompt_ids()]

    def decode():
        return model.generate(prompt, args.new_tokens, temperature=0.0, stop_tokens=[])[0]

    # The bound's bandwidth, probed in this process around its timed calls:
    # under the same load as they are.
    before = read_bandwidth(args.threads)
    timings = _time_calls(decode, args)
    return {"load_s": load, "read_gbps": (before + read_bandwidth(args.threads)) / 2, **timings}


def transformers_worker(args) -> dict:
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    start = time.perf_counter()
    model = transformers.AutoModelForCausalLM.from_pretrained(args.checkpoint).eval()
    load = time.perf_counter() - start
    ids = torch.tensor([prompt_ids()])

    def decode():
        with torch.inference_mode():
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=args.new_tokens,
                do_sample=False,
                pad_token_id=0,
            )
        return out[0].tolist()

    return {"load_s": load, "dtype": str(next(model.parameters()).dtype), **_time_calls(decode, args)}


def _time_calls(decode, args) -> dict:
    tokens = decode()  # untimed: first touches, allocations
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        decode()
        seconds.append(time.perf_counter() - start)
    return {"tokens": list(tokens), "seconds": seconds}


def profile_worker(args) -> dict:
    """One attnkit decode with every native call timed (common.KernelTimer):
    per token, the milliseconds of each kernel and of the Python between."""
    import common  # here only: the timed workers import nothing but attnkit (and the peer)

    import attnkit
    from attnkit.models import from_pretrained

    attnkit.set_num_threads(args.threads)
    model = from_pretrained(args.checkpoint)
    prompt = [prompt_ids()]
    model.generate(prompt, args.new_tokens, temperature=0.0, stop_tokens=[])
    with common.KernelTimer() as timer:
        start = time.perf_counter()
        model.generate(prompt, args.new_tokens, temperature=0.0, stop_tokens=[])
        wall = time.perf_counter() - start
    per_token = 1e3 / args.new_tokens
    return {
        "wall_ms": wall * per_token,
        "python_ms": timer.python_seconds(wall) * per_token,
        "kernels_ms": {kernel: seconds * per_token for kernel, seconds, _ in timer.breakdown()},
        "calls": {kernel: calls / args.new_tokens for kernel, _, calls in timer.breakdown()},
    }


def load_worker(args) -> dict:
    """The files read once, then the attnkit load (and, memory-mapped, the
    load with every weight page touched)."""
    import numpy as np

    import attnkit
    from attnkit.models import from_pretrained

    attnkit.set_num_threads(args.threads)
    files = checkpoint_files(Path(args.checkpoint))
    size = sum(os.path.getsize(f) for f in files)
    buffer = bytearray(max(os.path.getsize(f) for f in files))
    start = time.perf_counter()
    for name in files:
        with open(name, "rb", buffering=0) as f:
            view = memoryview(buffer)
            while f.readinto(view) > 0:
                pass
    read = time.perf_counter() - start
    del buffer
    start = time.perf_counter()
    model = from_pretrained(args.checkpoint)
    load = time.perf_counter() - start
    page = 4096 // 4
    total = 0.0
    for parameter in model.parameters():
        values = np.asarray(parameter._array).reshape(-1)
        total += float(values[::page].sum())
    touched = time.perf_counter() - start
    return {"bytes": size, "read_s": read, "load_s": load, "load_touched_s": touched, "checksum": total}


WORKERS = {
    "attnkit": attnkit_worker,
    "transformers": transformers_worker,
    "load": load_worker,
    "profile": profile_worker,
}


def run_worker(side: str, checkpoint: Path, args) -> dict:
    command = [
        sys.executable,
        __file__,
        "--worker",
        side,
        "--checkpoint",
        str(checkpoint),
        "--threads",
        str(args.threads),
        "--new-tokens",
        str(args.new_tokens),
        "--repeats",
        str(args.repeats),
    ]
    # Each library with its own defaults: not the idle-thread settings that
    # common.py puts into this process's environment (bench_decode.py imports it).
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT")}
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"the {side} worker failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ main ---


def weight_bytes(dtype_bytes: int = 4) -> float:
    """The weights one decoding step reads: each once (the embedding: one
    row in, all of it as the tied head)."""
    c = QWEN2_0_5B
    width, layers, d_ff = c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"]
    kv_width = c["num_key_value_heads"] * width // c["num_attention_heads"]
    per_block = width * (width + 2 * kv_width) + (width + 2 * kv_width) + width * width + 3 * width * d_ff + 2 * width
    return dtype_bytes * (layers * per_block + width + c["vocab_size"] * width + width)


def bytes_per_token(new_tokens: int) -> float:
    """float32 bytes one decoding step reads, averaged over the steps of a
    call: the weights and the keys and values cached so far."""
    c = QWEN2_0_5B
    kv_width = c["num_key_value_heads"] * c["hidden_size"] // c["num_attention_heads"]
    mean_cached = PROMPT_TOKENS + (new_tokens + 1) / 2
    return weight_bytes() + 4.0 * c["num_hidden_layers"] * 2 * mean_cached * kv_width


def read_bandwidth(threads: int) -> float:
    from attnkit import _C

    return _C.probe_memory_bandwidth("read", 512 << 20, threads, 5)


def decode_table(paths: dict, args) -> list:
    runs = [("attnkit", paths["float32"]), ("transformers", paths["float32"]), ("transformers", paths["bfloat16"])]
    if args.skip_bf16:
        runs = runs[:2]
    results = {run: [] for run in runs}
    for round_index in range(args.rounds):
        order = runs if round_index % 2 == 0 else runs[::-1]
        for side, path in order:
            result = run_worker(side, path, args)
            results[(side, path)].append(result)
            per_token = statistics.median(result["seconds"]) / args.new_tokens
            print(f"  round {round_index + 1}: {side:<12} {path.name:<8} {1 / per_token:6.2f} tokens/s", flush=True)
    bandwidth = statistics.median(outcome["read_gbps"] for outcome in results[runs[0]])
    bound = bandwidth * 1e9 / bytes_per_token(args.new_tokens)
    reference = results[runs[0]][0]["tokens"]
    rows = []
    for (side, path), outcomes in results.items():
        seconds = [s for outcome in outcomes for s in outcome["seconds"]]
        per_token = statistics.median(seconds) / args.new_tokens
        rows.append(
            {
                "library": side,
                "checkpoint": path.name,
                "compute dtype": outcomes[0].get("dtype", "torch.float32" if side != "attnkit" else "float32"),
                "tokens_per_s": 1.0 / per_token,
                "spread": (max(seconds) - min(seconds)) / statistics.median(seconds),
                "same_tokens_as_attnkit": outcomes[0]["tokens"] == reference,
                "load_s": statistics.median(o["load_s"] for o in outcomes),
            }
        )
    ours = rows[0]["tokens_per_s"]
    print(
        f"\ndecode, batch 1, {PROMPT_TOKENS}-token prompt + {args.new_tokens} greedy tokens, {args.threads} threads, "
        f"medians of {args.rounds} rounds x {args.repeats} calls"
    )
    print(
        f"{'library':<13}{'checkpoint':<11}{'computes in':<16}{'tokens/s':>9}{'spread':>8}{'attnkit/it':>11}"
        "  same tokens"
    )
    for row in rows:
        print(
            f"{row['library']:<13}{row['checkpoint']:<11}{row['compute dtype']:<16}{row['tokens_per_s']:9.2f}"
            f"{100 * row['spread']:7.0f}%{ours / row['tokens_per_s']:11.2f}  "
            f"{'yes' if row['same_tokens_as_attnkit'] else 'no'}"
        )
    print(
        f"float32 bound: {bytes_per_token(args.new_tokens) / 1e9:.3f} GB per token over {bandwidth:.1f} GB/s read "
        f"(the probe around attnkit's timed calls, {args.threads} threads, median) = {bound:.2f} tokens/s; "
        f"attnkit at {ours / bound:.0%} of it"
    )
    limits = {"read_bandwidth_gbps": bandwidth, "bound_tokens_per_s": bound}
    if args.profile:
        profile = run_worker("profile", paths["float32"], args)
        matmul = profile["kernels_ms"].get("matmul", 0.0)
        print(
            f"\nwhere an attnkit step goes (one decode, every native call timed): {profile['wall_ms']:.1f} ms "
            f"per token, {profile['python_ms']:.1f} ms of it Python between kernels"
        )
        for kernel, ms in sorted(profile["kernels_ms"].items(), key=lambda item: -item[1])[:8]:
            print(f"  {kernel:<22}{ms:8.2f} ms  {profile['calls'][kernel]:5.1f} calls")
        print(f"  the matrix-vector products stream the weights at {weight_bytes() / (matmul * 1e-3) / 1e9:.1f} GB/s")
        limits["profile"] = profile
    return rows, limits


def load_table(paths: dict, args) -> list:
    rows = []
    for dtype, path in paths.items():
        outcomes = [run_worker("load", path, args) for _ in range(args.rounds)]
        read = statistics.median(o["read_s"] for o in outcomes)
        load = statistics.median(o["load_s"] for o in outcomes)
        touched = statistics.median(o["load_touched_s"] for o in outcomes)
        rows.append(
            {
                "checkpoint": dtype,
                "bytes": outcomes[0]["bytes"],
                "read_s": read,
                "load_s": load,
                "load_touched_s": touched,
            }
        )
    print(f"\nload (from_pretrained) against one read of the files (page cache warm), medians of {args.rounds}")
    print(f"{'checkpoint':<11}{'MB':>7}{'read s':>9}{'load s':>9}{'load/read':>11}{'load+touch s':>14}{'/read':>7}")
    for row in rows:
        print(
            f"{row['checkpoint']:<11}{row['bytes'] / 1e6:7.0f}{row['read_s']:9.3f}{row['load_s']:9.3f}"
            f"{row['load_s'] / row['read_s']:11.2f}{row['load_touched_s']:14.3f}"
            f"{row['load_touched_s'] / row['read_s']:7.2f}"
        )
    return rows


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="threads of each library (default: 2)")
    parser.add_argument("--rounds", type=int, default=3, help="worker rounds per library (default: 3)")
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per worker (default: 2)")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens per call (default: 64)")
    parser.add_argument("--checkpoint-dir", type=Path, default=DEFAULT_DIR, help=f"(default: {DEFAULT_DIR})")
    parser.add_argument("--load-only", action="store_true", help="only the load table")
    parser.add_argument("--decode-only", action="store_true", help="only the decode table")
    parser.add_argument("--skip-bf16", action="store_true", help="no transformers run on the bf16 checkpoint")
    parser.add_argument("--profile", action="store_true", help="time attnkit's kernels in one more decode")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    return parser


def main(argv=None) -> None:
    args = argument_parser().parse_args(argv)
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args)))
        return
    paths = make_checkpoints(args.checkpoint_dir)
    document = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "time": time.strftime("%FT%T%z")}
    print(f"{os.cpu_count()} logical CPUs; load average {os.getloadavg()[0]:.2f}")
    if not args.load_only:
        document["decode"], document["limits"] = decode_table(paths, args)
    if not args.decode_only:
        document["load"] = load_table(paths, args)
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / "bench_decode_llama.json").write_text(json.dumps(document, indent=2) + "\n")
    print(f"written to {results / 'bench_decode_llama.json'}")


if __name__ == "__main__":
    main()
