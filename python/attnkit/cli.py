"""The ``attnkit`` command line: ``info``, ``train``, ``generate``, ``embed`` and ``bench``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing

import numpy as np

EXIT_USAGE = 2  # what argparse returns for a bad flag; also for a setting or file that cannot be used
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C

# The help of every TrainConfig field, by group (the order of `attnkit train --help`).
TRAIN_FLAG_HELP = {
    "data": {
        "data": "a UTF-8 text file to train on (default: the bundled tiny Shakespeare)",
        "tokenizer": "char: one id per character; byte: UTF-8 bytes; bpe: byte-level BPE trained on the text "
        "(needs pip install 'attnkit[bpe]')",
        "bpe_vocab_size": "the BPE vocabulary size, with --tokenizer bpe",
        "val_fraction": "the last fraction of the text held out for validation",
    },
    "model": {
        "arch": "gpt: GPT-2's blocks (LayerNorm, learned positions, GELU); llama: the Llama family's "
        "(RMSNorm, rotary positions, SwiGLU, no biases)",
        "n_layer": "Transformer blocks",
        "n_head": "attention heads per block",
        "n_embd": "the model width (a multiple of --n-head)",
        "block_size": "the context length in tokens",
        "dropout": "dropout probability",
        "bias": "biases in the Linear and LayerNorm layers (gpt)",
        "n_kv_head": "key/value heads, fewer than --n-head for grouped-query attention (llama; default: --n-head)",
        "gradient_checkpointing": "keep only each block's input and run the block again in backward: "
        "less memory, about one more forward's time, the same gradients",
        "n_experts": "a mixture of experts in every block's feed-forward, this many experts (default: dense)",
        "top_k": "experts per token, with --n-experts",
    },
    "optimization": {
        "batch_size": "sequences per step (under mpiexec, the global batch: each rank takes its share)",
        "max_iters": "training steps",
        "lr": "the peak learning rate",
        "min_lr": "the learning rate at the end of the cosine decay",
        "warmup_iters": "steps of linear warmup",
        "lr_decay_iters": "the step where the cosine reaches --min-lr (default: --max-iters)",
        "beta1": "AdamW's beta1",
        "beta2": "AdamW's beta2",
        "weight_decay": "AdamW's weight decay (biases and norms are exempt)",
        "grad_clip": "clip the gradients' global norm to this; 0 turns clipping off",
        "zero_optimizer": "under mpiexec: shard AdamW's state over the ranks (ZeRO stage 1)",
    },
    "fine-tuning": {
        "init_from": "start from the weights of the attnkit train run in this directory, with its model "
        "settings and tokenizer (they replace --n-layer and the others)",
        "lora_r": "the rank of LoRA adapters: freeze the model and train only them (0: no LoRA)",
        "lora_alpha": "the LoRA scaling numerator: updates are scaled by alpha / r",
        "lora_dropout": "dropout on the LoRA adapters' input",
        "lora_targets": "the projections that get adapters, comma-separated (qkv_proj, out_proj, fc1, fc2; "
        "q_proj, k_proj, v_proj for parts of qkv_proj)",
    },
    "evaluation": {
        "eval_interval": "steps between evaluations and checkpoints",
        "eval_iters": "batches per split in each evaluation",
    },
    "run": {
        "seed": "the random seed: the same seed gives the same run, bit for bit, on one machine",
        "device": "cpu or cuda (CUDA is not built yet: cuda is refused)",
        "dtype": "float32, or bf16: the matrix products in bfloat16 under attnkit.autocast (float32 sums, "
        "weights, gradients, norms, softmax and loss)",
        "num_threads": "attnkit's CPU threads (default: all cores)",
        "out": "the run directory: checkpoint, metrics.jsonl, loss.png",
        "resume": "continue the run in --out from its checkpoint, with its settings unless flags change them",
        "progress": "show the progress bar",
    },
}

TRAIN_FLAG_CHOICES = {
    "tokenizer": ("char", "byte", "bpe"),
    "device": ("cpu", "cuda"),
    "arch": ("gpt", "llama"),
    "dtype": ("float32", "bf16"),
}
TRAIN_FLAG_METAVARS = {"data": "PATH", "out": "DIR", "init_from": "RUN_DIR", "lora_targets": "NAMES"}


class UsageError(Exception):
    """A problem in what the user asked for; printed as one line, exit 2."""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _optional(kind):
    """(the type inside Optional[...], True) or (kind, False)."""
    if typing.get_origin(kind) is typing.Union:
        return next(t for t in typing.get_args(kind) if t is not type(None)), True
    return kind, False


def _parse_value(kind, optional: bool):
    def parse(text: str):
        if optional and text.lower() == "none":
            return None
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'none or ' if optional else ''}{kind.__name__}, got {text!r}"
            ) from None

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _add_train_flags(parser: argparse.ArgumentParser) -> None:
    from .training import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    defaults = TrainConfig()
    documented = [name for group in TRAIN_FLAG_HELP.values() for name in group]
    fields = [field.name for field in dataclasses.fields(TrainConfig)]
    assert sorted(documented) == sorted(fields), "every TrainConfig field needs a flag and its help"
    for title, helps in TRAIN_FLAG_HELP.items():
        group = parser.add_argument_group(title)
        for name, help_text in helps.items():
            kind, optional = _optional(hints[name])
            default = getattr(defaults, name)
            shown = "" if default is None else f" (default: {default})"
            # SUPPRESS: only the flags given appear, so they can override a config file.
            if kind is bool:
                group.add_argument(
                    _flag(name),
                    dest=name,
                    action=argparse.BooleanOptionalAction,
                    default=argparse.SUPPRESS,
                    help=help_text + shown,
                )
            else:
                choices = TRAIN_FLAG_CHOICES.get(name)
                metavar = TRAIN_FLAG_METAVARS.get(name) or (
                    "{" + ",".join(choices) + "}" if choices else "N" if kind is int else "X"
                )
                group.add_argument(
                    _flag(name),
                    dest=name,
                    type=_parse_value(kind, optional),
                    choices=choices,
                    default=argparse.SUPPRESS,
                    metavar=metavar,
                    help=help_text + shown,
                )


def read_config_file(path: str) -> dict:
    """The settings in a TOML or JSON file (flat keys, as the flags without
    the dashes: ``max_iters = 500`` or ``max-iters = 500``)."""
    if not os.path.isfile(path):
        raise UsageError(f"the config file '{path}' does not exist")
    extension = os.path.splitext(path)[1].lower()
    with open(path, "rb") as f:
        raw = f.read()
    try:
        if extension == ".json":
            values = json.loads(raw.decode("utf-8"))
        elif extension == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # the tomli package is a dependency on Python < 3.11
                import tomli as tomllib
            values = tomllib.loads(raw.decode("utf-8"))
        else:
            raise UsageError(f"the config file '{path}' should end in .toml or .json")
    except (UnicodeDecodeError, ValueError) as error:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise UsageError(f"the config file '{path}' cannot be read: {error}") from None
    if not isinstance(values, dict):
        raise UsageError(f"the config file '{path}' should hold a table of settings, not a {type(values).__name__}")
    return {key.replace("-", "_"): value for key, value in values.items()}


def _train(args) -> int:
    from .distributed import get_rank
    from .training import TrainConfig, saved_train_config, train

    given = {name: value for name, value in vars(args).items() if name not in ("command", "run", "config")}
    from_file = read_config_file(args.config) if args.config else {}
    values = dict(from_file, **given)
    if values.get("resume"):
        # The run's own settings, then the file's, then the flags'.
        out = values.get("out", TrainConfig.out)
        values = dict(dataclasses.asdict(saved_train_config(out)), **values)
    config = TrainConfig.from_dict(values, source=args.config or "settings")
    summary = train(config)
    if get_rank() != 0:
        return 0
    print(
        f"done: {summary['steps']} steps in {summary['elapsed_s']:.1f} s, train loss {summary['train_loss']:.4f}, "
        f"val loss {summary['val_loss']:.4f}; sample it with: attnkit generate {config.out}",
        file=sys.stderr,
    )
    return 0


def stream_text_tokens(model, prompt, max_new_tokens: int, **sampling):
    """Yields ``max_new_tokens`` new token ids (ints) continuing ``prompt``
    (a 1-D int array), as nanoGPT samples: each token sees the last
    block_size tokens at most. While the text fits in the block, one
    ``model.stream`` call decodes with the KV cache; past it, every token
    needs the window re-encoded (learned positions shift with the window),
    so each is one ``stream`` call over the last block_size tokens. The
    repetition penalty sees the window only."""
    from .tensor import from_numpy

    block_size = model.config.block_size
    tokens = list(np.asarray(prompt, np.int64)[-block_size:])
    while max_new_tokens > 0:
        window = np.array(tokens[-block_size:], np.int64).reshape(1, -1)
        count = min(max_new_tokens, block_size - window.shape[1] + 1)
        for step_tokens in model.stream(from_numpy(window), count, **sampling):
            token = int(step_tokens[0])
            tokens.append(token)
            max_new_tokens -= 1
            yield token


def _optional_int(text: str):
    return None if text.lower() == "none" else int(text)


def _optional_float(text: str):
    return None if text.lower() == "none" else float(text)


# The sampling flags of attnkit generate (the option's name: its type and
# help), and their defaults for a run directory's model (a checkpoint's come
# from its generation_config.json). A flag not given is absent from the
# parsed arguments, so that either default can apply.
_SAMPLING_FLAGS = {
    "temperature": (float, "divides the logits; 0 picks the most likely token (default: 0.8; a checkpoint's own)"),
    "top_k": (
        _optional_int,
        "sample among the k most likely tokens; none for all (default: 200; a checkpoint's own)",
    ),
    "top_p": (
        _optional_float,
        "sample among the most likely tokens whose probabilities sum to p (default: off; a checkpoint's own)",
    ),
    "repetition_penalty": (
        float,
        "divides the positive logits of tokens already present (default: 1.0, off; a checkpoint's own)",
    ),
}
_RUN_SAMPLING = {"temperature": 0.8, "top_k": 200, "top_p": None, "repetition_penalty": 1.0}


def checkpoint_sampling(generation_config, given: dict) -> dict:
    """The sampling settings for a Hugging Face checkpoint, as transformers
    generates with it: its generation_config.json (greedy unless
    ``do_sample``; then its temperature, top_k (default 50, 0 = off) and
    top_p), overridden by the flags ``given``."""
    config = generation_config or {}
    sampling = bool(config.get("do_sample", False))
    top_k = config.get("top_k", 50) if sampling else None
    top_p = config.get("top_p", 1.0) if sampling else None
    settings = {
        "temperature": float(config.get("temperature", 1.0) or 0.0) if sampling else 0.0,
        "top_k": top_k or None,
        "top_p": None if top_p in (None, 1.0) else top_p,
        "repetition_penalty": float(config.get("repetition_penalty", 1.0) or 1.0),
    }
    settings.update(given)
    return settings


def _generate_pretrained(args, given: dict) -> int:
    """attnkit generate --model DIR: a Hugging Face causal LM directory."""
    from .data import StreamDecoder
    from .models import from_pretrained
    from .models.hf import CheckpointError
    from .random import Generator
    from .training import ConfigError

    try:
        model = from_pretrained(args.model)
    except CheckpointError as error:
        raise ConfigError(str(error)) from None
    if not hasattr(model, "generate"):
        raise ConfigError(f"'{args.model}' holds a {model.hf_architecture}, not a causal language model")
    _apply_dtype(model, args.dtype)
    tokenizer = model.tokenizer
    if tokenizer is None:
        raise ConfigError(f"'{args.model}' has no tokenizer (tokenizer.json); attnkit generate needs one")
    if args.chat:
        messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
            {"role": "user", "content": args.prompt}
        ]
        try:
            prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        except ValueError as error:
            raise ConfigError(str(error)) from None
    else:
        prompt = tokenizer.encode(args.prompt)
    if len(prompt) == 0:
        raise ConfigError("the prompt is empty; give some text with --prompt")
    room = model.config.block_size - len(prompt) + 1
    if room < 1:
        raise ConfigError(f"the prompt has {len(prompt)} tokens, more than the model's {model.config.block_size}")
    out = sys.stdout
    if not args.chat:
        out.write(args.prompt)
        out.flush()
    decoder = StreamDecoder(tokenizer)
    for step_tokens in model.stream(
        [prompt],
        min(args.max_new_tokens, room),
        generator=Generator(args.seed),
        **checkpoint_sampling(model.generation_config, given),
    ):
        out.write(decoder.push([int(step_tokens[0])]))
        out.flush()
    out.write(decoder.flush() + "\n")
    out.flush()
    return 0


def _generate(args) -> int:
    from .data import StreamDecoder
    from .random import Generator
    from .training import ConfigError, load_run

    given = {name: getattr(args, name) for name in _SAMPLING_FLAGS if hasattr(args, name)}
    if (args.run_dir is None) == (args.model is None):
        raise UsageError("give a run directory (RUN_DIR) or a Hugging Face checkpoint (--model DIR), one of them")
    if args.model is not None:
        return _generate_pretrained(args, given)
    if args.chat or args.system:
        raise UsageError("--chat and --system are for a chat model's checkpoint (--model DIR)")
    sampling = {**_RUN_SAMPLING, **given}
    model, tokenizer, _ = load_run(args.run_dir, device=args.device)
    _apply_dtype(model, args.dtype)
    try:
        prompt = tokenizer.encode(args.prompt)
    except ValueError as error:
        raise ConfigError(f"the prompt does not fit the run's tokenizer: {error}") from None
    if len(prompt) == 0:
        raise ConfigError("the prompt is empty; give at least one character with --prompt")
    generator = Generator(args.seed)
    decoder = StreamDecoder(tokenizer)
    out = sys.stdout
    out.write(args.prompt)
    out.flush()
    # A top-k beyond the vocabulary (the default 200, a 65-character model) keeps every token.
    for token in stream_text_tokens(
        model,
        prompt,
        args.max_new_tokens,
        generator=generator,
        **sampling,
    ):
        out.write(decoder.push([token]))
        out.flush()
    out.write(decoder.flush() + "\n")
    out.flush()
    return 0


# --dtype of generate and embed: the weights' format for inference.
_INFERENCE_DTYPES = ("float32", "bf16", "int8")


def _apply_dtype(model, dtype: str) -> None:
    """float32 keeps the model as loaded; bf16 converts its weights to
    bfloat16 (model.to: half the memory; float32 inside each op); int8
    quantizes its Linear weights (attnkit.quantize: per-channel scales,
    float32 activations)."""
    if dtype == "bf16":
        from ._dtypes import bfloat16

        model.to(bfloat16)
    if dtype == "int8":
        from .quantization import quantize

        quantize(model, "int8")


def _bench(argv: list) -> int:
    from . import benchmarks  # imported here: only `attnkit bench` needs it

    return benchmarks.main(argv)


def _print_facts(facts: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(facts, indent=2))
    else:
        width = max(len(k) for k in facts)
        for key, value in facts.items():
            print(f"{key:<{width}}  {value}")


def _load_pretrained(directory: str):
    """attnkit.models.from_pretrained, its refusals as usage errors."""
    from .models import from_pretrained

    try:
        return from_pretrained(directory)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _model_facts(directory: str) -> dict:
    from .models.hf.checkpoint import CheckpointFiles

    model = _load_pretrained(directory)
    entries = CheckpointFiles(directory).entries.values()
    stored = sorted({entry.dtype.name for entry in entries if entry.dtype.is_floating_point})
    parameters = sum(parameter.numel() for parameter in model.parameters())
    dtypes = sorted({parameter.dtype.name for parameter in model.parameters()})
    facts = {
        "architecture": f"{model.hf_architecture} (attnkit {type(model).__name__})",
        "parameters": f"{parameters:,}",
        "dtype": f"{', '.join(dtypes)} (checkpoint: {', '.join(stored)})",
    }
    if model.tokenizer is not None:
        facts["tokenizer"] = f"{type(model.tokenizer).__name__}, {model.tokenizer.vocab_size} ids"
    return facts


def _info(args) -> int:
    if args.model is not None:
        _print_facts(_model_facts(args.model), args.json)
        return 0
    import attnkit

    info = attnkit.build_info()
    facts = {
        "version": attnkit.__version__,
        "build type": info["build_type"],
        "compiler": info["compiler"],
        "cpu isa": attnkit.cpu_isa(),
        "cpu isas available": ", ".join(attnkit.supported_cpu_isas()),
        "cpu isas compiled": ", ".join(info["compiled_isas"]),
        "cpu features": ", ".join(attnkit.cpu_features()) or "none beyond the baseline",
        "threads": attnkit.get_num_threads(),
        "cpu caches": ", ".join(
            f"{name} {info['cpu_caches'][key] >> 10} KiB"
            for name, key in (("L1d", "l1d_bytes"), ("L2", "l2_bytes"), ("L3", "l3_bytes"))
        )
        + f" ({info['cpu_caches']['source']})",
        "gemm tile and blocks": "{mr}x{nr}, MC {mc} KC {kc} NC {nc}".format(**attnkit._C.gemm_config()),
        "bf16 gemm tile and blocks": "{mr}x{nr}, MC {mc} KC {kc} NC {nc}".format(**attnkit._C.gemm_config("bfloat16")),
        "cuda": info["cuda"],
    }
    _print_facts(facts, args.json)
    return 0


def _embed(args) -> int:
    from .models import SentenceEncoder

    if args.input is not None:
        if args.sentences:
            raise UsageError("give sentences as arguments or --input FILE, not both")
        try:
            with open(args.input, encoding="utf-8") as f:
                sentences = f.read().splitlines()
        except OSError as error:
            raise UsageError(f"cannot read --input '{args.input}': {error.strerror}") from None
    else:
        sentences = list(args.sentences)
    if not sentences:
        raise UsageError("no sentences: give them as arguments or --input FILE (one a line)")
    if args.output is not None and not args.output.endswith(".npy"):
        raise UsageError(f"--output '{args.output}' should end in .npy")
    try:
        encoder = SentenceEncoder.from_pretrained(args.model)
    except ValueError as error:
        raise UsageError(str(error)) from None
    _apply_dtype(encoder, args.dtype)
    embeddings = encoder.encode(sentences, batch_size=args.batch_size, normalize=args.normalize)
    if args.output is not None:
        np.save(args.output, embeddings)
        rows, width = embeddings.shape
        print(f"wrote {rows} embeddings of {width} numbers to {args.output}", file=sys.stderr)
    else:
        for row in embeddings:
            print(" ".join(f"{value:.8g}" for value in row))
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text}")
    return value


def _add_dtype_flag(command: argparse.ArgumentParser) -> None:
    """--dtype, the weights' format for inference (generate and embed)."""
    command.add_argument(
        "--dtype",
        choices=_INFERENCE_DTYPES,
        default="float32",
        help="the weights: float32 as loaded, bf16 (converted to bfloat16 on load), or int8 (quantized per "
        "channel on load) (default: float32)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attnkit", description="attnkit: Transformers on attnkit's own kernels")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = commands.add_parser(
        "info", help="print the version, build and CPU/CUDA facts, or those of a pretrained model (--model)"
    )
    info.add_argument("--json", action="store_true", help="print JSON")
    info.add_argument(
        "--model",
        metavar="DIR",
        default=None,
        help="a Hugging Face model directory: print its architecture, parameter count and dtype",
    )
    info.set_defaults(run=_info)

    train = commands.add_parser(
        "train",
        help="train a GPT on a text (default: a character-level model of tiny Shakespeare)",
        usage="attnkit train [--config FILE] [settings]",
        description="Trains a GPT on a text. The defaults are nanoGPT's CPU recipe for tiny Shakespeare "
        "(about 0.8M parameters, 2000 steps). Settings come from the flags, then --config, "
        "then the defaults.",
    )
    train.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="a .toml or .json file of settings (names as the flags: max_iters = 500); flags override it",
    )
    _add_train_flags(train)
    train.set_defaults(run=_train)

    generate = commands.add_parser(
        "generate",
        help="write text with a trained run's model or a Hugging Face causal LM, streaming it as it comes",
        description="Continues a prompt with the model of an attnkit train run directory, or of a local Hugging "
        "Face checkpoint directory (--model DIR: GPT-2, Llama, Mistral, Qwen2). A checkpoint samples as its "
        "generation_config.json says (greedy unless do_sample) and stops at its end-of-sequence tokens; the "
        "flags override it.",
    )
    generate.add_argument("run_dir", metavar="RUN_DIR", nargs="?", help="the --out directory of attnkit train")
    generate.add_argument("--model", metavar="DIR", help="a Hugging Face causal LM checkpoint directory instead")
    generate.add_argument(
        "--chat", action="store_true", help="with --model: send the prompt as a user message through the chat template"
    )
    generate.add_argument("--system", default=None, help="with --chat: a system message first")
    generate.add_argument("--prompt", default="\n", help="the text to continue (default: a newline)")
    generate.add_argument("--max-new-tokens", type=_positive_int, default=500, help="tokens to write (default: 500)")
    for name, (kind, text) in _SAMPLING_FLAGS.items():
        generate.add_argument("--" + name.replace("_", "-"), type=kind, default=argparse.SUPPRESS, help=text)
    generate.add_argument("--seed", type=int, default=1, help="the sampling seed (default: 1)")
    generate.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="(default: cpu; CUDA is not built yet: cuda is refused)",
    )
    _add_dtype_flag(generate)
    generate.set_defaults(run=_generate)

    embed = commands.add_parser(
        "embed",
        help="sentence embeddings with a sentence-transformers model",
        description="Embeds sentences with a sentence-transformers model directory (all-MiniLM-L6-v2 and "
        "other BERT encoders): one line of numbers per sentence, or a .npy file.",
    )
    embed.add_argument("sentences", nargs="*", metavar="SENTENCE", help="the texts to embed")
    embed.add_argument("--model", required=True, metavar="DIR", help="the sentence-transformers model directory")
    embed.add_argument("--input", metavar="FILE", default=None, help="read the texts from FILE, one a line")
    embed.add_argument(
        "--output", metavar="FILE.npy", default=None, help="write a float32 array [sentences, dim] instead of printing"
    )
    embed.add_argument("--batch-size", type=_positive_int, default=32, help="texts per forward pass (default: 32)")
    embed.add_argument(
        "--normalize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="unit-length embeddings (default: as the model, with or without its Normalize module)",
    )
    _add_dtype_flag(embed)
    embed.set_defaults(run=_embed)

    # Listed for --help; `attnkit bench ...` is handed to attnkit.benchmarks before parsing.
    commands.add_parser(
        "bench", add_help=False, help="run the benchmark suite against PyTorch (attnkit bench --help for its options)"
    )
    return parser


def main(argv=None) -> int:
    from .training import ConfigError

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        return _bench(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (UsageError, ConfigError) as error:
        print(f"attnkit {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ImportError as error:
        # an optional extra that is not installed; anything else is a bug
        if error.name not in ("tokenizers", "sentencepiece", "jinja2"):
            raise
        print(f"attnkit {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (attnkit generate ... | head): stop quietly.
        # Point stdout at devnull so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
