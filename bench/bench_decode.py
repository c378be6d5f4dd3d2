"""Decode tokens/s with the KV cache, attnkit against the same GPT in PyTorch.

    python bench/bench_decode.py [--models shakespeare gpt2] [--threads 2] [--rounds 3] [--repeats 3] [--no-torch]
                                 [--profile] [--int8] [--bf16]

One call decodes ``new_tokens`` tokens greedily after a one-token prompt,
batch 1: attnkit's ``GPT.generate`` (caches allocated once per call, the
prompt in one forward pass, then one token per step, the next token from the
native sampler) against ``bench/torch_gpt.py``'s ``GPT.generate``
(preallocated caches, SDPA attention, ``argmax``) with the same weights
(copied from attnkit's model). Both must produce the same tokens; the script
says so. Each library runs in worker processes of its own, in alternating
rounds (common.py); the figures are per token.

- shakespeare: nanoGPT's CPU Shakespeare model (4 layers, 4 heads, 128 wide,
  vocab 65) with block 256, decoding 255 tokens;
- gpt2: GPT-2-small dims (12 layers, 12 heads, 768 wide, vocab 50257, block
  1024), random weights, decoding 64 tokens;
- qwen2-0.5b: a Llama-family model (Qwen2-0.5B's dims, 494M parameters,
  grouped-query attention) loaded from a transformers checkpoint, against
  transformers' own ``generate``, each library in worker processes of its
  own: see ``llama_decode.py``, which this script runs for it.

The bandwidth bound: a decoding step reads every weight once (the tied
embedding twice over: one row for the input, all of it for the LM head; the
positions one row) plus the cached keys and values; those bytes over the
read bandwidth measured by the native probe in the same run give the
fastest a step can be. The Shakespeare model's 3.2 MB of weights stay in the
L2/L3 caches, so its bound from DRAM bandwidth is loose and its steps are
bound by per-op overhead instead.

``--int8`` adds a third side, "attnkit int8": the same model after
``attnkit.quantize(model, "int8")`` (every Linear and the tied LM head as
int8 weights with per-channel scales, read 1 byte per weight), in worker
processes of its own in the same alternating rounds; its bound counts the
bytes it reads (int8 weights and their scales, float32 biases, norms, the
embedding rows and the cache). Its tokens may differ from float32's (the
weights are rounded), so only float32's are compared with PyTorch's.

``--bf16`` adds "attnkit bf16" the same way: the model after
``model.to(attnkit.bfloat16)`` (every weight and the KV cache in bfloat16,
float32 inside each op), whose bound counts half of float32's bytes.

``--profile`` times every native call of one attnkit decode, in one more
worker run under bench/kernel_timer.py, and prints the per-kernel breakdown
and the Python time between kernels.
"""

from __future__ import annotations

import time

import common
import llama_decode
import numpy as np

import attnkit
from attnkit.models import GPT, GPTConfig

# Measured by llama_decode.py (transformers' generate as the peer, in processes of its own).
LLAMA_MODELS = ("qwen2-0.5b",)
MODELS = {
    "shakespeare": dict(
        config=GPTConfig(vocab_size=65, block_size=256, n_layer=4, n_head=4, n_embd=128, dropout=0.0), new_tokens=255
    ),
    "gpt2": dict(
        config=GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768, dropout=0.0),
        new_tokens=64,
    ),
}
PROFILE_SIDE = "attnkit profile"
INT8_SIDE = "attnkit int8"
BF16_SIDE = "attnkit bf16"


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


def int8_bytes_per_token(config: GPTConfig, new_tokens: int) -> float:
    """The bytes of a step after attnkit.quantize: each Linear weight and the
    LM head's copy of the token embedding 1 byte per value plus a float32
    scale per row; the biases, LayerNorms, embedding rows and the cache as
    in float32."""
    width, layers, vocab = config.n_embd, config.n_layer, config.vocab_size
    linear_rows = 3 * width + width + 4 * width + width  # qkv, out, fc1, fc2 output rows
    linear_values = 3 * width * width + width * width + 2 * 4 * width * width
    biases_and_norms = 3 * width + width + 4 * width + width + 4 * width
    int8_bytes = layers * linear_values + vocab * width
    # + the head's scales, ln_f, one row of each embedding
    float_values = layers * (linear_rows + biases_and_norms) + vocab + 2 * width + 2 * width
    mean_cached_positions = (new_tokens + 1) / 2
    cache = layers * 2 * mean_cached_positions * width
    return int8_bytes + 4.0 * (float_values + cache)


def bf16_bytes_per_token(config: GPTConfig, new_tokens: int) -> float:
    """After model.to(attnkit.bfloat16) every weight and cached value takes
    2 bytes: half of float32's."""
    return bytes_per_token(config, new_tokens) / 2


# The low-precision sides: (the key of their figures, their bytes per token).
LOW_PRECISION_SIDES = {INT8_SIDE: ("int8", int8_bytes_per_token), BF16_SIDE: ("bf16", bf16_bytes_per_token)}


def decoder(side: str, config: GPTConfig, new_tokens: int, torch):
    """() -> int64 tokens [1, 1 + new_tokens]: the side's model, with the
    weights of attnkit's GPT at seed 0, decoding greedily."""
    attnkit.manual_seed(0)
    model = GPT(config)
    model.eval()
    if side == INT8_SIDE:
        attnkit.quantize(model, "int8")
    if side == BF16_SIDE:
        model.to(attnkit.bfloat16)
    prompt = np.zeros((1, 1), np.int64)
    if side.startswith("attnkit"):
        ours_prompt = attnkit.from_numpy(prompt)
        return lambda: model.generate(ours_prompt, new_tokens, temperature=0).numpy()
    import torch_gpt  # imports torch: only on PyTorch's side

    theirs = torch_gpt.GPT(config)
    torch_gpt.copy_from_attnkit(theirs, model)
    theirs.eval()
    torch_prompt = torch.from_numpy(prompt)
    caches = theirs.make_caches(1, 1 + new_tokens)
    return lambda: theirs.generate(torch_prompt, new_tokens, caches=caches).numpy()


def measure(recorder, side: str, torch, args) -> None:
    for name in args.models:
        config, new_tokens = MODELS[name]["config"], MODELS[name]["new_tokens"]
        decode = decoder(side, config, new_tokens, torch)
        recorder.facts[f"tokens {name}"] = decode().tolist()
        if side == PROFILE_SIDE:
            recorder.facts[f"profile {name}"] = profile(decode, new_tokens)
            continue
        recorder.time("decode", name, {side: decode}, new_tokens=new_tokens)


def profile(decode, new_tokens: int) -> dict:
    """Per token, of one decode timed kernel by kernel: wall, kernel and
    Python milliseconds, and the milliseconds and calls of each kernel."""
    import kernel_timer  # in the profile worker only, which runs under bench/kernel_timer.py

    with kernel_timer.KernelTimer() as timer:
        start = time.perf_counter()
        decode()
        wall = time.perf_counter() - start
    return {
        "wall_ms": wall * 1e3 / new_tokens,
        "kernel_ms": timer.kernel_seconds * 1e3 / new_tokens,
        "python_ms": timer.python_seconds(wall) * 1e3 / new_tokens,
        "by_kernel_ms": {kernel: seconds * 1e3 / new_tokens for kernel, seconds, _ in timer.breakdown()},
        "calls_by_kernel": {kernel: calls / new_tokens for kernel, _, calls in timer.breakdown()},
    }


def _speed_cells(row: dict, tokens_per_s: float, spread: float, bound_tokens_per_s: float, middle: list) -> list:
    """A table line of one weight format: the model, threads, tokens/s and
    its ± (half the spread), the ``middle`` cells (the comparisons), then the
    bound and the fraction of it reached."""
    return [
        row["model"],
        str(row["threads"]),
        f"{tokens_per_s:.1f}",
        f"{50 * spread:.0f}%",
        *middle,
        f"{bound_tokens_per_s:.1f}",
        f"{tokens_per_s / bound_tokens_per_s:.0%}",
    ]


def main() -> None:
    parser = common.argument_parser(__doc__.splitlines()[0])
    parser.set_defaults(threads=[2], repeats=3, warmup=1)
    parser.add_argument(
        "--models", nargs="+", default=["shakespeare", "gpt2"], choices=sorted(MODELS) + list(LLAMA_MODELS)
    )
    parser.add_argument("--profile", action="store_true", help="print the per-kernel time of one decode")
    parser.add_argument("--int8", action="store_true", help="also time the model quantized to int8 weights")
    parser.add_argument("--bf16", action="store_true", help="also time the model converted to bfloat16")
    args = parser.parse_args()
    # The Llama-family models run in llama_decode.py (transformers as the peer);
    # the workers of this script see only the GPT models.
    llama_models = [name for name in args.models if name in LLAMA_MODELS]
    args.models = [name for name in args.models if name not in LLAMA_MODELS]
    if llama_models and not args.worker:
        for threads in args.threads:
            llama_decode.main(["--decode-only", "--threads", str(threads), "--repeats", str(args.repeats)])
    if not args.models:
        return
    common.run_worker(args, measure)

    facts = common.print_machine(args)
    names = common.sides(args)
    if args.int8:
        names.insert(1, INT8_SIDE)
    if args.bf16:
        names.insert(1, BF16_SIDE)
    print(f"{args.rounds} round(s) of {', '.join(names)} worker processes at {args.threads} thread(s)")
    merged, documents = common.measure_sides(__file__, args, names)
    profiles = {}
    if args.profile:
        _, profiles = common.measure_sides(
            __file__, args, [PROFILE_SIDE], rounds=1, runner=common.kernel_timer_runner(__file__)
        )

    results = []
    for row in merged:
        name, threads = row["case"], row["threads"]
        config, new_tokens = MODELS[name]["config"], row["extra"]["new_tokens"]
        timings = row["columns"]
        ours = timings["attnkit"]
        theirs = timings.get("torch")
        tokens = {side: docs[0]["facts"][f"tokens {name}"] for side, docs in documents[threads].items()}
        bandwidth = common.limits(threads, args.probe_mib)["read"]
        step_bytes = bytes_per_token(config, new_tokens)
        result = {
            "model": name,
            "threads": threads,
            "new_tokens": new_tokens,
            "n_layer": config.n_layer,
            "n_embd": config.n_embd,
            "vocab": config.vocab_size,
            "attnkit": ours.to_json(),
            "attnkit_tokens_per_s": new_tokens / ours.median,
            "torch": None if theirs is None else theirs.to_json(),
            "torch_tokens_per_s": None if theirs is None else new_tokens / theirs.median,
            "same_tokens": None if "torch" not in tokens else tokens["attnkit"] == tokens["torch"],
            "bytes_per_token": step_bytes,
            "read_bandwidth_gbps": bandwidth,
            "bound_tokens_per_s": bandwidth * 1e9 / step_bytes,
        }
        for side, (key, side_bytes_per_token) in LOW_PRECISION_SIDES.items():
            if side in timings:
                side_bytes = side_bytes_per_token(config, new_tokens)
                result[key] = {
                    **timings[side].to_json(),
                    "tokens_per_s": new_tokens / timings[side].median,
                    "bytes_per_token": side_bytes,
                    "bound_tokens_per_s": bandwidth * 1e9 / side_bytes,
                }
        if profiles:
            result["profile_ms_per_token"] = profiles[threads][PROFILE_SIDE][0]["facts"][f"profile {name}"]
            p = result["profile_ms_per_token"]
            print(
                f"\n{name}, {threads} threads: one decode of {new_tokens} tokens, per token: wall "
                f"{p['wall_ms']:.3f} ms, kernels {p['kernel_ms']:.3f} ms, Python {p['python_ms']:.3f} ms"
            )
            for kernel, ms in list(p["by_kernel_ms"].items())[:15]:
                print(f"  {kernel:<24} {ms:8.3f} ms  {p['calls_by_kernel'][kernel]:5.1f} calls")
        results.append(result)

    header = ["model", "thr", "attnkit tok/s", "±", "torch tok/s", "±", "attnkit/torch", "bound tok/s", "of bound"]
    header.append("same tokens")
    lines = []
    for r in results:
        ours, theirs = r["attnkit_tokens_per_s"], r["torch_tokens_per_s"]
        against_torch = [
            "-" if theirs is None else f"{theirs:.1f}",
            "-" if theirs is None else f"{50 * r['torch']['spread']:.0f}%",
            "-" if theirs is None else f"{ours / theirs:.2f}",
        ]
        same = "-" if r["same_tokens"] is None else ("yes" if r["same_tokens"] else "NO")
        lines.append(_speed_cells(r, ours, r["attnkit"]["spread"], r["bound_tokens_per_s"], against_torch) + [same])
    print()
    print(common.format_columns(header, lines))
    for key, _ in LOW_PRECISION_SIDES.values():
        rows = [r for r in results if key in r]
        if not rows:
            continue
        header = ["model", "thr", f"{key} tok/s", "±", f"{key}/fp32", f"{key}/torch", "bound tok/s", "of bound"]
        lines = []
        for r in rows:
            low, theirs = r[key], r["torch_tokens_per_s"]
            ratios = [
                f"{low['tokens_per_s'] / r['attnkit_tokens_per_s']:.2f}",
                "-" if theirs is None else f"{low['tokens_per_s'] / theirs:.2f}",
            ]
            lines.append(_speed_cells(r, low["tokens_per_s"], low["spread"], low["bound_tokens_per_s"], ratios))
        what = "int8 weights (attnkit.quantize)" if key == "int8" else "bfloat16 (model.to(attnkit.bfloat16))"
        print(f"\n{what}, same rounds; the bound counts the bytes {key} decoding reads")
        print(common.format_columns(header, lines))
    print(
        "\nattnkit/torch above 1: attnkit is faster. ±: half the spread of the round medians (one round: of the "
        "calls). bound: bytes read per token over the read bandwidth measured in this run."
    )
    path = common.write_document(__file__, facts, {"settings": vars(args), "rows": results})
    print(f"written to {path}")


if __name__ == "__main__":
    main()
