"""Training a character-level (or byte, or BPE) GPT on a text: what
``attnkit train`` runs.

``TrainConfig`` holds every setting; its defaults are nanoGPT's CPU recipe
for tiny Shakespeare (config/train_shakespeare_char.py with the changes its
README gives for a CPU): a 4-layer, 4-head, 128-wide GPT over 64
characters, batches of 12, 2000 iterations, AdamW (betas 0.9, 0.99, weight
decay 0.1 on all but biases and norms), lr 1e-3 warmed up over 100 steps
then cosine-decayed to 1e-4, gradients clipped to norm 1.0.
``train(config)`` runs it and returns a summary.

The run directory (``config.out``) holds:

- ``model.safetensors``: the weights (a flat state_dict other safetensors
  readers load) with, in its metadata, the model config, the tokenizer, the
  train config and the step; ``load_run`` rebuilds model and tokenizer.
- ``training_state.safetensors``: what resuming needs besides the weights:
  the optimizer state, the random generator, the step, the time (the
  schedule is a function of the step, so it is rebuilt, not saved).
  The two files are replaced as a pair (see ``_write_checkpoint``): a run
  killed at any instant, even mid-save, resumes from its last whole pair.
- ``metrics.jsonl``: one JSON object per evaluation: step (steps done),
  train_loss and val_loss (mean cross-entropy over the fixed evaluation
  batches), lr (of the next step), elapsed_s (wall time since the run
  began, evaluations included), tokens_per_s (training throughput since the
  previous evaluation) and tokens (seen so far).
- ``loss.png``: the loss curves, when matplotlib is installed.

Data-parallel: launched by an MPI launcher (``mpiexec -n 2 attnkit train``,
with mpi4py installed), every rank trains a replica under
``DistributedDataParallel`` on its share of each global batch (``batch_size``
stays the global batch), evaluations are split over the ranks, and rank 0
alone shows progress and writes the run directory, which every rank reads
when resuming (a filesystem they share). ``zero_optimizer`` shards AdamW's
state over the ranks. The checkpoint is the same as one process writes, so a
run resumes on any number of ranks.

Reproducibility: the model's initialization and dropout draw from the
default generator seeded with ``config.seed``; the training batch of step t
comes from stream 2**63 + t - 1 of the same seed (never a stream the model
uses), and the evaluation batches are fixed, from streams 3 * 2**62 + k, so
every evaluation scores the same tokens. Everything that changes during a
run is in the checkpoint, so a resumed run continues bit for bit.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import numbers
import os
import secrets
import signal
import sys
import threading
import time
import typing
from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import data as _data
from . import distributed, lora, optim
from .amp import autocast
from .autograd import no_grad
from .models import GPT, GPTConfig, LlamaConfig
from .nn import functional as F
from .nn.parallel import DistributedDataParallel
from .nn.utils import clip_grad_norm_
from .random import Generator, default_generator
from .runtime import build_info, get_num_threads, set_num_threads
from .serialization import load, load_config, save
from .tensor import from_numpy, tensor

MODEL_FILE = "model.safetensors"
STATE_FILE = "training_state.safetensors"
METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss.png"
ADAPTER_DIR = "adapter"
TRAIN_STREAM_OFFSET = 2**63
EVAL_STREAM_OFFSET = 3 * 2**62
# Rank r's dropout draws from the default generator's streams this far on, so
# ranks never drop the same units; rank 0 keeps the single-process streams.
RANK_STREAM_STRIDE = 2**48
DEVICES = ("cpu", "cuda")
ARCHITECTURES = ("gpt", "llama")
TRAIN_DTYPES = ("float32", "bf16")


class ConfigError(ValueError):
    """A setting, a data file or a run directory that cannot be used; the
    message says which and why (the CLI prints it without a traceback)."""


def _require_cuda(what: str) -> None:
    """ConfigError unless attnkit's CUDA module (attnkit._cuda) was built."""
    if importlib.util.find_spec(f"{__package__}._cuda") is None:
        raise ConfigError(
            f"{what}, but this attnkit was built without CUDA (cuda: {build_info()['cuda']}); use --device cpu"
        )


@dataclass
class TrainConfig:
    """Every setting of a training run (``attnkit train --help`` lists them)."""

    # data
    data: Optional[str] = None  # a UTF-8 text file; None: the bundled tiny Shakespeare
    tokenizer: str = "char"  # char, byte or bpe
    bpe_vocab_size: int = 512  # ids of the BPE tokenizer, when tokenizer is bpe
    val_fraction: float = 0.1  # the last part of the text, held out for validation
    # model
    arch: str = "gpt"  # gpt (GPT-2's blocks) or llama (RMSNorm, rotary positions, SwiGLU, no biases)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float = 0.0
    bias: bool = True
    n_kv_head: Optional[int] = None  # key/value heads of a llama (grouped-query attention); None: n_head
    gradient_checkpointing: bool = False  # keep each block's input only; rerun the block in backward
    n_experts: Optional[int] = None  # a mixture of experts in every feed-forward; None: dense
    top_k: int = 2  # experts per token, with n_experts
    # optimization
    batch_size: int = 12
    max_iters: int = 2000
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: Optional[int] = None  # where the cosine reaches min_lr; None: max_iters
    beta1: float = 0.9
    beta2: float = 0.99
    weight_decay: float = 0.1
    grad_clip: float = 1.0  # the gradients' global norm limit; 0 turns clipping off
    zero_optimizer: bool = False  # data-parallel: shard AdamW's state over the ranks (ZeRO stage 1)
    # fine-tuning
    init_from: Optional[str] = None  # start from the weights of this run directory (its model and tokenizer)
    lora_r: int = 0  # > 0: freeze the model and train LoRA adapters of this rank (attnkit.lora)
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: str = "qkv_proj"  # comma-separated module names (attnkit.lora.apply)
    # evaluation
    eval_interval: int = 250  # steps between evaluations (and checkpoints)
    eval_iters: int = 20  # batches per split in an evaluation
    # the run
    seed: int = 1337
    device: str = "cpu"
    dtype: str = "float32"  # float32, or bf16: the products under autocast(bfloat16)
    num_threads: Optional[int] = None  # attnkit's threads; None: OMP_NUM_THREADS, else one per CPU
    out: str = "out"  # the run directory
    resume: bool = False  # continue the run in `out` from its checkpoint
    progress: bool = True  # show a progress bar

    def decay_steps(self) -> int:
        """The step where the cosine reaches min_lr (never before warmup ends)."""
        return self.lr_decay_iters if self.lr_decay_iters is not None else max(self.max_iters, self.warmup_iters)

    def validate(self) -> None:
        """Checks every field's type and range; raises ConfigError naming the first bad one."""
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            kind = hints[field.name]
            optional = typing.get_origin(kind) is typing.Union
            if optional:
                kind = next(t for t in typing.get_args(kind) if t is not type(None))
                if value is None:
                    continue
            if kind is float and isinstance(value, numbers.Real) and not isinstance(value, bool):
                value = float(value)
                setattr(self, field.name, value)
            if kind is int and isinstance(value, numbers.Integral) and not isinstance(value, bool):
                value = int(value)
                setattr(self, field.name, value)
            if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                raise ConfigError(
                    f"setting '{field.name}' expected {'None or ' if optional else ''}{kind.__name__}, got {value!r}"
                )
            if kind is float and not math.isfinite(value):
                raise ConfigError(f"setting '{field.name}' expected a finite number, got {value}")

        def require(condition: bool, name: str, expected: str) -> None:
            if not condition:
                raise ConfigError(f"setting '{name}' expected {expected}, got {getattr(self, name)!r}")

        for name in ("n_layer", "n_head", "n_embd", "block_size", "batch_size", "eval_interval", "eval_iters"):
            require(getattr(self, name) >= 1, name, "a positive int")
        for name in ("max_iters", "warmup_iters"):
            require(getattr(self, name) >= 0, name, "an int >= 0")
        require(self.n_embd % self.n_head == 0, "n_embd", f"a multiple of n_head={self.n_head}")
        require(self.arch in ARCHITECTURES, "arch", "one of " + ", ".join(ARCHITECTURES))
        require(
            self.n_kv_head is None or (self.n_kv_head >= 1 and self.n_head % self.n_kv_head == 0),
            "n_kv_head",
            f"None or a divisor of n_head={self.n_head}",
        )
        require(self.n_kv_head is None or self.arch == "llama", "n_kv_head", "None unless arch is llama")
        require(self.n_experts is None or self.n_experts >= 1, "n_experts", "None or a positive int")
        if self.n_experts is not None:
            require(1 <= self.top_k <= self.n_experts, "top_k", f"an int in [1, n_experts={self.n_experts}]")
        require(
            self.arch != "llama" or (self.n_embd // self.n_head) % 2 == 0,
            "n_embd",
            "an even head size n_embd / n_head (rotary positions turn pairs)",
        )
        require(self.tokenizer in _data.TOKENIZER_KINDS, "tokenizer", "one of " + ", ".join(_data.TOKENIZER_KINDS))
        require(
            self.bpe_vocab_size >= 256 + len(_data.SPECIAL_TOKENS),
            "bpe_vocab_size",
            "an int >= 259 (the 256 bytes and three specials)",
        )
        require(self.dtype in TRAIN_DTYPES, "dtype", "one of " + ", ".join(TRAIN_DTYPES))
        require(0.0 < self.val_fraction < 1.0, "val_fraction", "a number in (0, 1)")
        require(0.0 <= self.dropout < 1.0, "dropout", "a number in [0, 1)")
        require(self.lr > 0.0, "lr", "a positive number")
        require(0.0 <= self.min_lr <= self.lr, "min_lr", f"a number in [0, lr={self.lr}]")
        require(
            self.lr_decay_iters is None or self.lr_decay_iters >= self.warmup_iters,
            "lr_decay_iters",
            f"None or an int >= warmup_iters={self.warmup_iters}",
        )
        require(0.0 <= self.beta1 < 1.0, "beta1", "a number in [0, 1)")
        require(0.0 <= self.beta2 < 1.0, "beta2", "a number in [0, 1)")
        require(self.weight_decay >= 0.0, "weight_decay", "a number >= 0")
        require(self.grad_clip >= 0.0, "grad_clip", "a number >= 0 (0: no clipping)")
        require(self.lora_r >= 0, "lora_r", "an int >= 0 (0: no LoRA)")
        require(0.0 < self.lora_alpha < math.inf, "lora_alpha", "a positive finite number")
        require(0.0 <= self.lora_dropout < 1.0, "lora_dropout", "a number in [0, 1)")
        require(bool(self.lora_target_list()), "lora_targets", "comma-separated module names")
        require(self.init_from is None or bool(self.init_from), "init_from", "None or a run directory")
        require(0 <= self.seed < 2**64, "seed", "an int in [0, 2**64)")
        require(self.device in DEVICES, "device", "cpu or cuda")
        require(self.num_threads is None or self.num_threads >= 1, "num_threads", "None or a positive int")
        require(bool(self.out), "out", "a directory path")
        if self.device == "cuda":
            _require_cuda("setting 'device' is cuda")

    def lora_target_list(self) -> list:
        return [name.strip() for name in self.lora_targets.split(",") if name.strip()]

    def model_config(self, vocab_size: int) -> GPTConfig:
        sizes = dict(
            vocab_size=vocab_size,
            block_size=self.block_size,
            n_layer=self.n_layer,
            n_head=self.n_head,
            n_embd=self.n_embd,
            gradient_checkpointing=self.gradient_checkpointing,
        )
        if self.n_experts is not None:
            sizes.update(n_experts=self.n_experts, top_k=self.top_k)
        if self.arch == "llama":
            # SwiGLU's width: 2/3 of the 4x MLP (the same parameters), to a multiple of 32, as Llama sizes it.
            d_ff = -(-(8 * self.n_embd // 3) // 32) * 32
            return LlamaConfig(**sizes, dropout=self.dropout, n_kv_head=self.n_kv_head, d_ff=d_ff, tie_embeddings=True)
        return GPTConfig(**sizes, dropout=self.dropout, bias=self.bias)

    @classmethod
    def from_dict(cls, values: dict, *, source: str = "config") -> TrainConfig:
        """A config from ``values`` (names as the fields); an unknown name is a ConfigError."""
        names = [field.name for field in dataclasses.fields(cls)]
        unknown = [key for key in values if key not in names]
        if unknown:
            raise ConfigError(
                f"{source}: unknown setting{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(map(repr, unknown))}; the settings are {', '.join(names)}"
            )
        return cls(**values)


# Settings that fix the model, its data and the optimizer's state (the
# optimizer's checkpoint carries its betas and weight decay): a resumed run
# must keep them. The schedule (lr, min_lr, warmup, decay) may change.
_RUN_DEFINING = (
    "arch",
    "n_kv_head",
    "n_experts",
    "top_k",
    "data",
    "tokenizer",
    "bpe_vocab_size",
    "val_fraction",
    "n_layer",
    "n_head",
    "n_embd",
    "block_size",
    "bias",
    "batch_size",
    "seed",
    "beta1",
    "beta2",
    "weight_decay",
    "init_from",
    "lora_r",
    "lora_alpha",
    "lora_targets",
)
# The settings a run started with --init-from takes from that run.
_MODEL_SETTINGS = (
    "arch",
    "tokenizer",
    "bpe_vocab_size",
    "n_layer",
    "n_head",
    "n_kv_head",
    "n_embd",
    "block_size",
    "bias",
)


# ---------------------------------------------------------------- data ---


def load_corpus(config: TrainConfig, tokenizer=None) -> tuple:
    """(tokenizer, train tokens, val tokens) for ``config``: the text of
    ``config.data`` (default: the bundled corpus), encoded by ``tokenizer``
    (default: a new one of ``config.tokenizer`` built from the text) and
    split. ConfigError when the file cannot be used or a split is shorter
    than one window of block_size + 1 tokens."""
    try:
        text = _data.load_text(config.data)
    except (OSError, ValueError) as error:
        raise ConfigError(str(error)) from None
    if tokenizer is None:
        tokenizer = _data.build_tokenizer(config.tokenizer, text, bpe_vocab_size=config.bpe_vocab_size)
    try:
        tokens = tokenizer.encode(text)
    except ValueError as error:
        raise ConfigError(
            f"the text of {config.data or 'the bundled corpus'} does not fit the run's tokenizer: {error}"
        ) from None
    train_tokens, val_tokens = _data.split_tokens(tokens, config.val_fraction)
    for name, part in (("training", train_tokens), ("validation", val_tokens)):
        if len(part) <= config.block_size:
            raise ConfigError(
                f"the {name} split of {config.data or 'the bundled corpus'} has {len(part)} tokens, "
                f"fewer than one window of block_size + 1 = {config.block_size + 1}; "
                f"use more text or a smaller --block-size"
            )
    return tokenizer, train_tokens, val_tokens


def train_generator(seed: int, step: int = 0) -> Generator:
    """The generator of the training batches, positioned at the batch of step ``step + 1``."""
    generator = Generator(seed)
    generator.load_state_dict({"seed": seed, "offset": TRAIN_STREAM_OFFSET + step})
    return generator


def evaluation_batches(tokens: np.ndarray, config: TrainConfig, split_index: int) -> list:
    """The fixed evaluation batches of a split (0: train, 1: val): a list of
    ``eval_iters`` numpy (x, y) pairs."""
    generator = Generator(config.seed)
    generator.load_state_dict({"seed": config.seed, "offset": EVAL_STREAM_OFFSET + split_index * config.eval_iters})
    return [
        _data.batch_arrays(
            tokens,
            _data.random_offsets(len(tokens), config.batch_size, config.block_size, generator),
            config.block_size,
        )
        for _ in range(config.eval_iters)
    ]


# ------------------------------------------------------------ run files ---

# A checkpoint is written whole into a staging directory, which a rename then
# turns into the pending one: from that instant the new pair is complete, and
# moving its files over the old ones can be finished by whoever comes next.
_STAGING_PREFIX = ".checkpoint-staging-"
_STATE_KEYS = {"optimizer", "default_generator", "step", "elapsed_s", "train_s"}
_PENDING_DIR = ".checkpoint-pending"


def _sync(path: str) -> None:
    """Flushes a file's or a directory's contents (a directory: its entries,
    so that a rename survives a power cut, not only a killed process)."""
    if os.name != "posix":
        return
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _finish_checkpoint(out: str) -> None:
    """Completes the switch to a pending checkpoint, if a save was stopped in
    the middle of one: its remaining files replace the old ones (the state
    first, so that model.safetensors, which ``attnkit generate`` reads, stays
    whole and last)."""
    pending = os.path.join(out, _PENDING_DIR)
    if not os.path.isdir(pending):
        return
    for name in (STATE_FILE, MODEL_FILE):
        if os.path.exists(os.path.join(pending, name)):
            os.replace(os.path.join(pending, name), os.path.join(out, name))
    _sync(out)
    os.rmdir(pending)


def _discard_unfinished_checkpoints(out: str, *, pending: bool) -> None:
    """Removes staging directories of saves that were killed before they
    completed (never a whole pair), and with ``pending`` a pending checkpoint
    too (a new run must not be overwritten by an old run's last save)."""
    if not os.path.isdir(out):
        return
    names = [n for n in os.listdir(out) if n.startswith(_STAGING_PREFIX) or (pending and n == _PENDING_DIR)]
    for name in names:
        directory = os.path.join(out, name)
        for entry in os.listdir(directory):
            os.unlink(os.path.join(directory, entry))
        os.rmdir(directory)


def _write_checkpoint(out: str, model_state: dict, model_config: dict, training_state: dict) -> None:
    """Replaces model.safetensors and training_state.safetensors in ``out``
    as a pair. Both are written into a fresh staging directory and synced;
    renaming it to the pending directory is the commit point; then its files
    are moved over the old ones. Killed before the commit, the old pair stays;
    after it, the next ``_finish_checkpoint`` (resume calls it) completes the
    move. At no instant is the last whole pair lost."""
    _finish_checkpoint(out)  # a stopped switch first: its pair is the newest
    _discard_unfinished_checkpoints(out, pending=False)
    staging = os.path.join(out, f"{_STAGING_PREFIX}{os.getpid()}-{secrets.token_hex(4)}")
    os.mkdir(staging)
    save(model_state, os.path.join(staging, MODEL_FILE), config=model_config)
    save(training_state, os.path.join(staging, STATE_FILE))
    for name in (MODEL_FILE, STATE_FILE):
        _sync(os.path.join(staging, name))
    _sync(staging)
    os.rename(staging, os.path.join(out, _PENDING_DIR))
    _sync(out)
    _finish_checkpoint(out)


def _model_metadata(model: GPT, tokenizer, config: TrainConfig, step: int) -> dict:
    return {
        "model": dataclasses.asdict(model.config),
        "tokenizer": tokenizer.to_dict(),
        "train": dataclasses.asdict(config),
        "step": step,
    }


def load_run(run_dir, *, device: str = "cpu") -> tuple:
    """(model, tokenizer, metadata) of a run directory written by ``train``;
    the model is in eval mode. ``metadata`` holds the model and train
    configs and the step. ConfigError when ``run_dir`` is not a run directory."""
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise ConfigError(f"'{run_dir}' is not a directory; give the --out directory of an attnkit train run")
    path = os.path.join(run_dir, MODEL_FILE)
    if not os.path.isfile(path):
        raise ConfigError(
            f"'{run_dir}' is not an attnkit run directory: it has no {MODEL_FILE} "
            f"(attnkit train --out {run_dir} writes one)"
        )
    try:
        metadata = load_config(path)
        if not isinstance(metadata, dict) or not {"model", "tokenizer"} <= set(metadata):
            raise ValueError("its metadata has no model config and tokenizer")
        model = GPT(GPTConfig(**metadata["model"]))
        tokenizer = _data.tokenizer_from_dict(metadata["tokenizer"])
        _apply_lora(model, metadata.get("train", {}))
        model.load_state_dict(load(path, mmap=False))
    except (ValueError, TypeError, json.JSONDecodeError) as error:
        raise ConfigError(f"'{path}' is not a checkpoint attnkit train wrote: {error}") from None
    if device != "cpu":
        _require_cuda(f"device {device}")
        model.to(device)
    return model.eval(), tokenizer, metadata


def _apply_lora(model: GPT, train_settings: dict) -> None:
    """The LoRA adapters a run's train settings (a TrainConfig as a dict) put on its model."""
    if train_settings.get("lora_r", 0) > 0:
        settings = TrainConfig.from_dict(train_settings)
        lora.apply(
            model,
            r=settings.lora_r,
            alpha=settings.lora_alpha,
            dropout=settings.lora_dropout,
            targets=settings.lora_target_list(),
        )


def saved_train_config(run_dir) -> TrainConfig:
    """The TrainConfig a run directory was trained with."""
    path = os.path.join(os.fspath(run_dir), MODEL_FILE)
    if not os.path.isfile(path):
        raise ConfigError(f"nothing to resume: '{run_dir}' has no {MODEL_FILE}")
    metadata = load_config(path) or {}
    if "train" not in metadata:
        raise ConfigError(f"'{path}' has no train config to resume from")
    return TrainConfig.from_dict(metadata["train"], source=path)


def _read_metrics(path: str, up_to_step: int) -> list:
    """The logged evaluations up to ``up_to_step`` (later ones belong to a
    part of the run the checkpoint does not hold, and are dropped)."""
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [record for record in records if record["step"] <= up_to_step]


def write_loss_plot(records: list, path: str) -> bool:
    """Draws train and val loss against the step into ``path`` (a PNG);
    False when matplotlib is not installed."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    # Figure + the Agg canvas, not pyplot: no global state, no display needed.
    figure = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    steps = [r["step"] for r in records]
    axes.plot(steps, [r["train_loss"] for r in records], label="train", marker=".")
    axes.plot(steps, [r["val_loss"] for r in records], label="val", marker=".")
    axes.set_xlabel("step")
    axes.set_ylabel("cross-entropy loss (nats per token)")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    return True


class _DeferredInterrupt:
    """Ctrl-C during training: the first SIGINT only sets ``requested``, so
    the loop stops at the next step boundary with consistent weights and
    optimizer state and saves them; a second one interrupts at once. Only
    the main thread receives signals; elsewhere this does nothing."""

    def __init__(self, say) -> None:
        self.requested = False
        self._say = say
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self._say("interrupted: saving a checkpoint at the end of this step (Ctrl-C again to stop at once)")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


# --------------------------------------------------------------- train ---


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _evaluate(model: GPT, batches: list, device: str, rank: int = 0, world_size: int = 1) -> float:
    """The mean cross-entropy over ``batches``. Data-parallel, rank r scores
    batches r, r + world_size, ...; the losses are then summed in batch
    order, so the mean is the one a single process computes."""
    losses = np.zeros(len(batches), np.float32)
    with no_grad():
        for i in range(rank, len(batches), world_size):
            x, y = batches[i]
            logits = model(from_numpy(x).to(device))
            losses[i] = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), from_numpy(y.reshape(-1)).to(device)
            ).item()
    if world_size > 1:
        distributed.all_reduce(from_numpy(losses))  # each entry comes from one rank: x + 0 is exact
    return sum(float(loss) for loss in losses) / len(batches)


def train(config: TrainConfig, *, callback=None) -> dict:
    """Runs a training (see the module docstring) and returns a summary:
    steps, train_loss and val_loss (the last evaluation's), elapsed_s
    (wall time of the whole run, resumed parts included), tokens_per_s and
    out. ``callback(step, loss)``, when given, is called after every step.

    Ctrl-C saves a checkpoint at the end of the current step, then raises
    KeyboardInterrupt; ``resume=True`` continues from it. The default
    generator is seeded (or restored) for the model's initialization and
    dropout.
    """
    from tqdm.auto import tqdm

    if not isinstance(config, TrainConfig):
        raise TypeError(f"train: argument 'config' expected a TrainConfig, got {type(config).__name__}")
    config = dataclasses.replace(config)
    config.validate()
    rank, world_size = distributed.init()
    if config.batch_size % world_size:
        raise ConfigError(
            f"setting 'batch_size' (the global batch) expected a multiple of the {world_size} ranks, "
            f"got {config.batch_size}"
        )
    if config.zero_optimizer and world_size == 1:
        raise ConfigError("setting 'zero_optimizer' shards the optimizer over MPI ranks; launch with mpiexec -n N")

    def say(message: str) -> None:
        # stderr, with the progress bar: stdout stays free for the caller.
        if rank == 0:
            tqdm.write(message, file=sys.stderr)

    if config.num_threads is not None:
        set_num_threads(config.num_threads)
    elif world_size > 1:  # the ranks on one machine share its cores
        set_num_threads(max(1, get_num_threads() // distributed.local_world_size()))
    out = config.out
    model_path, state_path = os.path.join(out, MODEL_FILE), os.path.join(out, STATE_FILE)
    metrics_path, plot_path = os.path.join(out, METRICS_FILE), os.path.join(out, PLOT_FILE)

    saved_state = tokenizer = None
    if config.resume:
        if rank == 0:
            _finish_checkpoint(out)  # a save stopped mid-switch: its pair is the newest
        if world_size > 1:
            distributed.barrier()
        if not os.path.isfile(state_path) or not os.path.isfile(model_path):
            raise ConfigError(
                f"nothing to resume: '{out}' has no checkpoint ({MODEL_FILE} and {STATE_FILE}); "
                f"start a new run without --resume"
            )
        saved = saved_train_config(out)
        changed = [
            f"{name} (the run has {getattr(saved, name)!r}, this config {getattr(config, name)!r})"
            for name in _RUN_DEFINING
            if getattr(saved, name) != getattr(config, name)
        ]
        if changed:
            raise ConfigError(f"cannot resume the run in '{out}' with different settings: " + "; ".join(changed))
        model_metadata = load_config(model_path)
        tokenizer = _data.tokenizer_from_dict(model_metadata["tokenizer"])
        saved_state = load(state_path, mmap=False)
        if not isinstance(saved_state, dict) or not _STATE_KEYS <= set(saved_state):
            raise ConfigError(f"cannot resume the run in '{out}': {STATE_FILE} is not a training state attnkit wrote")
        # Files saved one after the other (by attnkit before pairs were
        # written whole, or copied by hand) can be a step apart, and resuming
        # would pair one step's weights with another's optimizer state.
        if model_metadata["step"] != saved_state["step"]:
            raise ConfigError(
                f"cannot resume the run in '{out}': {MODEL_FILE} is at step {model_metadata['step']} "
                f"but {STATE_FILE} at step {saved_state['step']} (not saved as one pair)"
            )
    elif os.path.isfile(model_path) or os.path.isdir(os.path.join(out, _PENDING_DIR)):
        say(f"note: starting a new run in '{out}'; the checkpoint there is replaced (--resume continues it)")

    initial_weights = None
    if config.init_from is not None and saved_state is None:
        # A new fine-tuning run: the model, its settings and its tokenizer
        # are those of the run it starts from.
        initial, tokenizer, initial_metadata = load_run(config.init_from)
        if initial_metadata.get("train", {}).get("lora_r", 0) > 0:
            lora.merge_and_unload(initial)
        base_settings = TrainConfig.from_dict(initial_metadata["train"])
        for name in _MODEL_SETTINGS:
            setattr(config, name, getattr(base_settings, name))
        initial_weights = initial.state_dict()
    tokenizer, train_tokens, val_tokens = load_corpus(config, tokenizer)
    default_generator.manual_seed(config.seed)
    model = GPT(config.model_config(tokenizer.vocab_size))
    if initial_weights is not None:
        model.load_state_dict(initial_weights)
    if config.lora_r > 0:
        try:
            _apply_lora(model, dataclasses.asdict(config))
        except ValueError as error:  # a target the model does not have
            raise ConfigError(f"setting 'lora_targets': {error}") from None
    model.to(config.device)
    groups = optim.weight_decay_groups(model, config.weight_decay)
    if config.zero_optimizer:
        optimizer = optim.ZeroRedundancyOptimizer(groups, optim.AdamW, lr=config.lr, betas=(config.beta1, config.beta2))
    else:
        optimizer = optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2))
    scheduler = optim.WarmupCosineLR(
        optimizer, config.warmup_iters, config.decay_steps(), min_lr_ratio=config.min_lr / config.lr
    )
    step, elapsed_before, train_seconds_before = 0, 0.0, 0.0
    if saved_state is not None:
        step = saved_state["step"]
        model.load_state_dict(load(model_path, mmap=False))
        optimizer.load_state_dict(saved_state["optimizer"])
        # The schedule is a function of the step: this config's, at the saved step.
        scheduler.load_state_dict(dict(scheduler.state_dict(), last_step=step))
        default_generator.load_state_dict(saved_state["default_generator"])
        elapsed_before, train_seconds_before = saved_state["elapsed_s"], saved_state["train_s"]
    trained = model
    if world_size > 1:
        trained = DistributedDataParallel(model)  # also gives every rank rank 0's weights
        streams = default_generator.state_dict()
        default_generator.load_state_dict(dict(streams, offset=streams["offset"] + rank * RANK_STREAM_STRIDE))
    batches = train_generator(config.seed, step)
    eval_sets = (evaluation_batches(train_tokens, config, 0), evaluation_batches(val_tokens, config, 1))
    tokens_per_step = config.batch_size * config.block_size

    records = _read_metrics(metrics_path, step) if config.resume else []
    if world_size > 1:
        distributed.barrier()  # every rank has read the run directory before rank 0 rewrites it
    if rank == 0:
        os.makedirs(out, exist_ok=True)
        _discard_unfinished_checkpoints(out, pending=not config.resume)
        with open(metrics_path, "w", encoding="utf-8") as f:  # drops records past the checkpoint
            f.writelines(json.dumps(record) + "\n" for record in records)
    logged_steps = {record["step"] for record in records}

    def save_checkpoint() -> None:
        # Every rank calls it (ZeRO gathers the optimizer's shards); rank 0 writes.
        if config.zero_optimizer:
            optimizer.consolidate_state_dict(to=0)
        if rank != 0:
            return  # (rank 0's generator is the one a single process has)
        _write_checkpoint(
            out,
            model.state_dict(),
            _model_metadata(model, tokenizer, config, step),
            {
                "optimizer": optimizer.state_dict(),
                "default_generator": default_generator.state_dict(),
                "step": step,
                "elapsed_s": elapsed(),
                "train_s": train_seconds,
            },
        )
        if config.lora_r > 0:  # the adapters alone too, in PEFT's format (model.safetensors has them as well)
            lora.save_adapter(model, os.path.join(out, ADAPTER_DIR), base_model_name_or_path=config.init_from)

    if config.lora_r > 0 and not config.resume:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        say(
            f"LoRA rank {config.lora_r} on {', '.join(config.lora_target_list())}: {trainable:,} trainable "
            f"parameters, {trainable / model.num_parameters():.2%} of the model"
            + (f" from '{config.init_from}'" if config.init_from else "")
        )
    if not config.resume:
        say(
            f"training a GPT of {model.num_parameters() / 1e6:.2f}M parameters ({_count(config.n_layer, 'layer')}, "
            f"{_count(config.n_head, 'head')}, width {config.n_embd}, block {config.block_size}) on "
            f"{config.data or 'the bundled tiny Shakespeare'}: {len(train_tokens):,} training and "
            f"{len(val_tokens):,} validation tokens, {tokenizer.kind} tokenizer of {tokenizer.vocab_size} ids; "
            f"run directory '{out}'"
        )
    else:
        say(f"resuming the run in '{out}' at step {step}")

    start = time.perf_counter()
    train_seconds = train_seconds_before  # time in training steps, evaluations excluded

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - start

    last_loss = math.nan
    interval_tokens, interval_seconds = 0, 0.0  # since the last evaluation, for tokens_per_s
    bar = tqdm(
        total=config.max_iters,
        initial=min(step, config.max_iters),
        unit="step",
        dynamic_ncols=True,
        disable=not config.progress or rank != 0,
        smoothing=0.1,
    )
    with bar, _DeferredInterrupt(say) as interrupt:
        window_tokens, window_start = 0, time.perf_counter()
        stop = False  # data-parallel: whether any rank was interrupted, agreed at the last step
        while True:
            if stop if world_size > 1 else interrupt.requested:
                save_checkpoint()
                if records and rank == 0:
                    write_loss_plot(records, plot_path)
                say(
                    f"stopped at step {step}; the checkpoint is in '{out}'; "
                    f"attnkit train --resume --out {out} continues the run"
                )
                raise KeyboardInterrupt
            if (step % config.eval_interval == 0 or step == config.max_iters) and step not in logged_steps:
                model.eval()
                with autocast(enabled=config.dtype == "bf16"):  # the model as it trains
                    train_loss = _evaluate(model, eval_sets[0], config.device, rank, world_size)
                    val_loss = _evaluate(model, eval_sets[1], config.device, rank, world_size)
                model.train()
                record = {
                    "step": step,
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    "lr": scheduler.get_last_lr()[0],
                    "elapsed_s": round(elapsed(), 3),
                    "tokens_per_s": round(interval_tokens / interval_seconds, 1) if interval_seconds else None,
                    "tokens": step * tokens_per_step,
                }
                records.append(record)
                logged_steps.add(step)
                if rank == 0:
                    with open(metrics_path, "a", encoding="utf-8") as f:
                        f.write(json.dumps(record) + "\n")
                say(f"step {step}: train loss {train_loss:.4f}, val loss {val_loss:.4f}")
                save_checkpoint()
                interval_tokens, interval_seconds = 0, 0.0
                window_tokens, window_start = 0, time.perf_counter()
            if step >= config.max_iters:
                break

            step_start = time.perf_counter()
            x, y = _data.get_batch(
                train_tokens, config.batch_size, config.block_size, generator=batches, rank=rank, world_size=world_size
            )
            with autocast(enabled=config.dtype == "bf16"):
                logits = trained(x.to(config.device))
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1).to(config.device))
            optimizer.zero_grad()
            # A mixture of experts adds its load-balancing loss; the reported loss stays the cross-entropy.
            (loss if model.aux_loss is None else loss + model.aux_loss).backward()
            if config.grad_clip > 0.0:
                clip_grad_norm_(model.parameters(), config.grad_clip)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            last_loss = loss.item()
            if world_size > 1:  # the global batch's loss, and whether any rank was interrupted
                agreed = tensor([last_loss, float(interrupt.requested)])
                distributed.all_reduce(agreed)
                loss_sum, interrupted = agreed.tolist()
                last_loss, stop = loss_sum / world_size, interrupted > 0
            step += 1
            seconds = time.perf_counter() - step_start
            train_seconds += seconds
            interval_tokens += tokens_per_step
            interval_seconds += seconds
            window_tokens += tokens_per_step

            bar.update(1)
            now = time.perf_counter()
            if now - window_start >= 1.0 or step == 1:
                bar.set_postfix_str(
                    f"loss {last_loss:.4f}, lr {lr:.2e}, {window_tokens / (now - window_start):,.0f} tok/s",
                    refresh=False,
                )
                window_tokens, window_start = 0, now
            if callback is not None:
                callback(step, last_loss)

    if records and rank == 0 and not write_loss_plot(records, plot_path):
        say("note: matplotlib is not installed, so there is no loss.png (pip install 'attnkit[plot]')")
    final = records[-1] if records else {}
    return {
        "steps": step,
        "train_loss": final.get("train_loss"),
        "val_loss": final.get("val_loss"),
        "last_step_loss": last_loss,
        "elapsed_s": elapsed(),
        "train_s": train_seconds,
        "tokens_per_s": step * tokens_per_step / train_seconds if train_seconds else None,
        "out": out,
    }


__all__ = [
    "TrainConfig",
    "ConfigError",
    "train",
    "load_run",
    "load_corpus",
    "saved_train_config",
    "evaluation_batches",
    "train_generator",
    "write_loss_plot",
]
