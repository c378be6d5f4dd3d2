"""Decode tokens/s with the KV cache, attnkit against the same GPT in PyTorch.

    python bench/bench_decode.py [--models shakespeare gpt2] [--threads 2] [--repeats 3] [--no-torch] [--profile]

One call decodes ``new_tokens`` tokens greedily after a one-token prompt,
batch 1: attnkit's ``GPT.generate`` (caches allocated once per call, the
prompt in one forward pass, then one token per step, the next token from the
native sampler) against ``bench/torch_gpt.py``'s ``GPT.generate``
(preallocated caches, SDPA attention, ``argmax``) with the same weights
(copied from attnkit's model). Both must produce the same tokens; the script
says so. The two are timed in alternating rounds at one thread count; the
median is reported, per token.

- shakespeare: nanoGPT's CPU Shakespeare model (4 layers, 4 heads, 128 wide,
  vocab 65) with block 256, decoding 255 tokens;
- gpt2: GPT-2-small dims (12 layers, 12 heads, 768 wide, vocab 50257, block
  1024), random weights, decoding 64 tokens.

The bandwidth bound: a decoding step reads every weight once (the tied
embedding twice over: one row for the input, all of it for the LM head; the
positions one row) plus the cached keys and values; those bytes over the
read bandwidth measured by the native probe in the same run give the
fastest a step can be. The Shakespeare model's 3.2 MB of weights stay in the
L2/L3 caches, so its bound from DRAM bandwidth is loose and its steps are
bound by per-op overhead instead.

``--profile`` times every native call of one attnkit decode
(``common.KernelTimer``) and prints the per-kernel breakdown and the Python
time between kernels.
"""

from __future__ import annotations

import json
import sys
import time

import common  # first: it sets how idle threads wait, before any thread pool starts
import numpy as np

import attnkit
from attnkit.benchmarks import optional_torch
from attnkit.models import GPT, GPTConfig

MODELS = {
    "shakespeare": dict(
        config=GPTConfig(vocab_size=65, block_size=256, n_layer=4, n_head=4, n_embd=128, dropout=0.0), new_tokens=255
    ),
    "gpt2": dict(
        config=GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768, dropout=0.0),
        new_tokens=64,
    ),
}


def bytes_per_token(config: GPTConfig, new_tokens: int) -> float:
    """float32 bytes one decoding step reads, averaged over the steps: the
    weights (the position table one row, the token embedding once whole for
    the LM head) and the keys and values cached so far."""
    width, layers = config.n_embd, config.n_layer
    per_block = (
        (3 * width * width + 3 * width)
        + (width * width + width)
        + 2 * (4 * width * width)
        + 4 * width
        + width
        + 4 * width
    )  # qkv, out, fc1 + fc2 weights, their biases, two LayerNorms
    weights = layers * per_block + 2 * width + config.vocab_size * width + width  # + ln_f, wte, one wpe row
    mean_cached_positions = (new_tokens + 1) / 2
    cache = layers * 2 * mean_cached_positions * width
    return 4.0 * (weights + cache)


def decoders(config: GPTConfig, new_tokens: int, torch):
    """name -> () -> int64 tokens [1, 1 + new_tokens], from one set of weights."""
    attnkit.manual_seed(0)
    model = GPT(config)
    model.eval()
    prompt = np.zeros((1, 1), np.int64)
    ours_prompt = attnkit.from_numpy(prompt)
    result = {"attnkit": lambda: model.generate(ours_prompt, new_tokens, temperature=0).numpy()}
    if torch is not None:
        from attnkit import _torch_gpt as torch_gpt  # imports torch: only when it is installed

        theirs = torch_gpt.GPT(torch_gpt.GPTConfig.from_config(config))
        torch_gpt.copy_from_attnkit(theirs, model)
        theirs.eval()
        torch_prompt = torch.from_numpy(prompt)
        caches = theirs.make_caches(1, 1 + new_tokens)
        result["torch"] = lambda: theirs.generate(torch_prompt, new_tokens, caches=caches).numpy()
    return result, model


def main() -> None:
    parser = common.argument_parser(__doc__.splitlines()[0])
    parser.set_defaults(threads=[2], repeats=3, warmup=1)
    parser.add_argument("--models", nargs="+", default=["shakespeare", "gpt2"], choices=sorted(MODELS))
    parser.add_argument("--profile", action="store_true", help="print the per-kernel time of one decode")
    args = parser.parse_args()
    torch = optional_torch(disabled=args.no_torch)

    results = []
    for threads in args.threads:
        common.set_threads(threads, torch)
        bandwidth = common.memory_bandwidth("read", threads, args.probe_mib)
        for name in args.models:
            config, new_tokens = MODELS[name]["config"], MODELS[name]["new_tokens"]
            calls, model = decoders(config, new_tokens, torch)
            outputs = {key: fn() for key, fn in calls.items()}
            same = None if "torch" not in outputs else bool(np.array_equal(outputs["attnkit"], outputs["torch"]))
            timings = common.time_side_by_side(calls, warmup=args.warmup, repeats=args.repeats)
            per_token = {key: t.median / new_tokens for key, t in timings.items()}
            step_bytes = bytes_per_token(config, new_tokens)
            bound_s = step_bytes / (bandwidth * 1e9)
            row = {
                "model": name,
                "threads": threads,
                "new_tokens": new_tokens,
                "n_layer": config.n_layer,
                "n_embd": config.n_embd,
                "vocab": config.vocab_size,
                "attnkit_tokens_per_s": 1.0 / per_token["attnkit"],
                "attnkit_spread": timings["attnkit"].spread,
                "torch_tokens_per_s": 1.0 / per_token["torch"] if "torch" in per_token else None,
                "torch_spread": timings["torch"].spread if "torch" in timings else None,
                "same_tokens": same,
                "bytes_per_token": step_bytes,
                "read_bandwidth_gbps": bandwidth,
                "bound_tokens_per_s": 1.0 / bound_s,
            }
            if args.profile:
                with common.KernelTimer() as timer:
                    start = time.perf_counter()
                    calls["attnkit"]()
                    wall = time.perf_counter() - start
                row["profile_ms_per_token"] = {
                    "wall": wall * 1e3 / new_tokens,
                    "kernels": timer.kernel_seconds * 1e3 / new_tokens,
                    "python": timer.python_seconds(wall) * 1e3 / new_tokens,
                    "by_kernel": {kernel: seconds * 1e3 / new_tokens for kernel, seconds, _ in timer.breakdown()},
                }
                print(
                    f"\n{name}, {threads} threads: one decode of {new_tokens} tokens, per token: "
                    f"wall {wall * 1e3 / new_tokens:.3f} ms, kernels {timer.kernel_seconds * 1e3 / new_tokens:.3f} ms,"
                    f" Python {timer.python_seconds(wall) * 1e3 / new_tokens:.3f} ms"
                )
                for kernel, seconds, count in timer.breakdown(top=15):
                    print(f"  {kernel:<24} {seconds * 1e3 / new_tokens:8.3f} ms  {count / new_tokens:5.1f} calls")
            results.append(row)

    print()
    header = [
        "model",
        "thr",
        "attnkit tok/s",
        "±",
        "torch tok/s",
        "±",
        "attnkit/torch",
        "bound tok/s",
        "of bound",
        "same tokens",
    ]
    lines = []
    for r in results:
        theirs = r["torch_tokens_per_s"]
        lines.append(
            [
                r["model"],
                str(r["threads"]),
                f"{r['attnkit_tokens_per_s']:.1f}",
                f"{50 * r['attnkit_spread']:.0f}%",
                "-" if theirs is None else f"{theirs:.1f}",
                "-" if theirs is None else f"{50 * r['torch_spread']:.0f}%",
                "-" if theirs is None else f"{r['attnkit_tokens_per_s'] / theirs:.2f}",
                f"{r['bound_tokens_per_s']:.1f}",
                f"{r['attnkit_tokens_per_s'] / r['bound_tokens_per_s']:.0%}",
                "-" if r["same_tokens"] is None else ("yes" if r["same_tokens"] else "NO"),
            ]
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for line in lines:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)))
    bandwidths = ", ".join(
        f"{r['read_bandwidth_gbps']:.1f} GB/s at {r['threads']} threads"
        for r in results
        if r["model"] == results[0]["model"]
    )
    print(
        f"\nattnkit/torch above 1: attnkit is faster. bound: bytes read per token over the read "
        f"bandwidth measured in this run ({bandwidths})."
    )

    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = common.RESULTS_DIR / "bench_decode.json"
    path.write_text(
        json.dumps(
            {
                "command": " ".join([common.Path(sys.executable).name] + sys.argv),
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "machine": common.machine_facts(torch),
                "rows": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written to {path}")


if __name__ == "__main__":
    main()
