"""The vocabulary an architecture module is written in: config fields,
weight rules and their transforms, and the registry they are entered in.

An ``Architecture`` is data: which Hugging Face class names it answers to,
how config.json's fields become the attnkit config and back (``Field``,
``Fixed``), and which checkpoint tensors become which attnkit parameters
(``Weight`` rules, each with a ``Transform``). The loader in ``loading.py``
reads and writes checkpoints with it; it knows no architecture by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

# A Field without a default: config.json must have it.
REQUIRED = object()


class CheckpointError(ValueError):
    """A checkpoint directory that attnkit cannot load as it is: its config
    or its weights do not fit, or a file is malformed. The message says what
    and where."""


# ----------------------------------------------------------- the config ---


@dataclass(frozen=True)
class Field:
    """config.json's ``hf`` holds attnkit's config field ``attnkit``, as is.
    ``default`` is the value Hugging Face assumes when config.json lacks it
    (REQUIRED: config.json must have it)."""

    hf: str
    attnkit: str
    default: Any = REQUIRED


@dataclass(frozen=True)
class Fixed:
    """An HF setting that attnkit's model implements one way only: config.json's
    ``hf`` must be ``value`` (Hugging Face's default, assumed when config.json
    lacks it) or one of ``also`` (other names for the same computation).
    Saving writes ``value``."""

    hf: str
    value: Any
    also: tuple = ()

    def accepts(self, hf_config: dict) -> bool:
        given = hf_config.get(self.hf, self.value)
        return any(given == allowed and type(given) is type(allowed) for allowed in (self.value, *self.also))


# ---------------------------------------------------------- the weights ---


@dataclass(frozen=True)
class Transform:
    """How n checkpoint tensors become one attnkit tensor, and back.

    - ``to_attnkit(arrays, config)``: float32 numpy arrays in the order of
      the rule's HF names -> the attnkit parameter's values.
    - ``to_hf(array, config)``: the parameter's values -> the checkpoint's
      arrays, in the same order.
    - ``hf_shapes(shape, config)``: the parameter's shape -> the shapes the
      checkpoint must hold (checked before anything is read).

    ``config`` is the attnkit model's config (part sizes come from it).
    ``identity`` is the one transform under which a parameter may share the
    checkpoint's memory (a memory-mapped float32 tensor).

    ``stacked(config)``, when given and True, says that ``to_attnkit`` is the
    checkpoint tensors as they are, stacked along dim 0 (one tensor: itself):
    the loader then writes each straight into its rows of the parameter,
    widening float16/bfloat16 there, with no temporary array.
    """

    name: str
    to_attnkit: Callable[[list, Any], np.ndarray]
    to_hf: Callable[[np.ndarray, Any], list]
    hf_shapes: Callable[[tuple, Any], list]
    stacked: Optional[Callable[[Any], bool]] = None

    def __repr__(self) -> str:
        return f"Transform({self.name})"


identity = Transform(
    "identity",
    to_attnkit=lambda arrays, config: arrays[0],
    to_hf=lambda array, config: [array],
    hf_shapes=lambda shape, config: [tuple(shape)],
    stacked=lambda config: True,
)

# A matrix stored [in, out] (GPT-2's Conv1D) for a Linear's [out, in].
transpose = Transform(
    "transpose",
    to_attnkit=lambda arrays, config: np.ascontiguousarray(arrays[0].T),
    to_hf=lambda array, config: [np.ascontiguousarray(array.T)],
    hf_shapes=lambda shape, config: [tuple(reversed(shape))],
)


def concat(parts: Optional[Callable[[Any], list]] = None, count: int = 3) -> Transform:
    """Several checkpoint tensors stacked along dim 0 into one attnkit tensor
    (a fused projection: query, key and value rows into ``qkv_proj``; key
    and value into ``kv_proj``; gate and up into a SwiGLU ``fc1``).
    ``parts(config)`` gives the rows of each (grouped-query attention: the
    query's differ from the key's); default: ``count`` equal parts."""

    def sizes(shape, config) -> list:
        if parts is not None:
            return list(parts(config))
        if shape[0] % count:
            raise CheckpointError(f"concat: {shape[0]} rows do not split into {count} equal parts")
        return [shape[0] // count] * count

    def to_attnkit(arrays, config):
        return np.concatenate(arrays, axis=0)

    def to_hf(array, config):
        bounds = np.cumsum(sizes(array.shape, config))[:-1]
        return [np.ascontiguousarray(piece) for piece in np.split(array, bounds, axis=0)]

    def hf_shapes(shape, config):
        return [(rows, *shape[1:]) for rows in sizes(shape, config)]

    return Transform(
        "concat" if parts is None else "concat(parts)", to_attnkit, to_hf, hf_shapes, stacked=lambda config: True
    )


def experts(count: int = 1) -> Transform:
    """One tensor per expert (or ``count`` each, stacked along rows, as a
    SwiGLU expert's gate and up projections) into one attnkit tensor
    [n_experts, rows, ...] (``MoEFeedForward``'s ``fc1_weight`` and
    ``fc2_weight``). The rule's HF names hold ``{e}``: the checkpoint
    tensors come expert by expert, each expert's in the rule's order, which
    is the parameter's row order: the loader writes each into its rows."""

    def to_attnkit(arrays, config):
        return np.stack([np.concatenate(arrays[e : e + count], axis=0) for e in range(0, len(arrays), count)])

    def to_hf(array, config):
        return [np.ascontiguousarray(part) for expert in array for part in np.split(expert, count, axis=0)]

    def hf_shapes(shape, config):
        if shape[1] % count:
            raise CheckpointError(f"experts: {shape[1]} rows do not split into {count} equal parts")
        return [(shape[1] // count, *shape[2:])] * (shape[0] * count)

    return Transform(f"experts({count})", to_attnkit, to_hf, hf_shapes, stacked=lambda config: True)


@dataclass(frozen=True)
class Weight:
    """The attnkit parameter ``attnkit`` comes from the checkpoint tensors
    ``hf`` through ``transform``. Names may hold ``{i}`` (a layer index,
    taken from the attnkit name and put into the HF names) and ``{e}`` (an
    expert index: the rule then names one tensor per expert of
    ``config.n_experts``, see ``experts``). HF names are relative to the
    architecture's base model (see ``Architecture.heads``)."""

    attnkit: str
    hf: tuple
    transform: Transform = identity

    def __init__(self, attnkit: str, hf, transform: Transform = identity) -> None:
        object.__setattr__(self, "attnkit", attnkit)
        object.__setattr__(self, "hf", (hf,) if isinstance(hf, str) else tuple(hf))
        object.__setattr__(self, "transform", transform)

    def pattern(self) -> re.Pattern:
        return re.compile(re.escape(self.attnkit).replace(r"\{i\}", r"(?P<i>\d+)") + r"\Z")

    def hf_names(self, groups: dict, config) -> list:
        """The checkpoint names for the attnkit parameter whose name matched
        ``pattern()`` with ``groups``; with ``{e}``, expert by expert."""
        if not any("{e}" in name for name in self.hf):
            return [name.format(**groups) for name in self.hf]
        return [name.format(e=e, **groups) for e in range(config.n_experts) for name in self.hf]


# ------------------------------------------------------ the architecture ---


@dataclass(frozen=True)
class Architecture:
    """One Hugging Face model class, as attnkit loads and saves it.

    - ``name``: the class name in config.json's ``architectures``
      ("GPT2LMHeadModel"); ``model_type``: its ``model_type`` ("gpt2").
    - ``config_class``, ``model_class``: attnkit's config dataclass and model.
    - ``fields``: ``Field`` and ``Fixed`` entries, HF -> attnkit.
    - ``weights``: ``Weight`` rules; every parameter of the built model
      needs exactly one.
    - ``base_prefix``: what the HF class puts before its base model's names
      ("transformer." for GPT2LMHeadModel, "" for BertModel). A checkpoint
      may have the prefix or not (HF's bare base models are saved without
      it); saving writes it.
    - ``heads``: HF name beginnings outside the base model ("lm_head.",
      "cls.", "final_logits_bias"): never prefixed.
    - ``ignore``: regexes of checkpoint names that hold no weight of the
      model (buffers older transformers saved, such as
      "embeddings.position_ids"), skipped when loading.
    - ``tied``: (alias, source) pairs of HF names: the alias (an output
      head tied to the embedding) may be in the checkpoint as a copy of the
      source; when it is, it must equal it (attnkit's model has one tensor
      for both), and saving leaves it out, as transformers does.
    - ``derive(hf_config, names) -> dict``: attnkit config values that are
      not one HF field each (which optional modules the checkpoint has,
      derived sizes); ``names`` is the set of checkpoint names, unprefixed.
    - ``check(hf_config)``: raises CheckpointError for settings attnkit
      cannot run that no single Fixed expresses (may be None).
    - ``to_hf_extra(config, base) -> dict``: config.json values that
      ``derive`` reads, for saving (``base``: the config.json the model was
      loaded from, or {}).
    - ``free_fields``: attnkit config fields the checkpoint does not fix:
      settings of training only (a label smoothing, dropout) and layouts
      that saving converts (the rope pairing: q/k rows are permuted on the
      way). They are left out when ``save_pretrained`` asks whether this
      class expresses a model exactly (its config, written as config.json
      and read back, must come back the same).
    - ``default_for_type``: the class to use for a config.json that names
      only its ``model_type``.
    """

    name: str
    model_type: str
    config_class: type
    model_class: type
    fields: tuple
    weights: tuple
    base_prefix: str = ""
    heads: tuple = ()
    ignore: tuple = ()
    tied: tuple = ()
    derive: Optional[Callable[[dict, set], dict]] = None
    check: Optional[Callable[[dict], None]] = None
    to_hf_extra: Optional[Callable[[Any, dict], dict]] = None
    free_fields: tuple = ()
    default_for_type: bool = False
    _ignored: tuple = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ignored", tuple(re.compile(p + r"\Z") for p in self.ignore))

    def is_head(self, hf_name: str) -> bool:
        return any(hf_name.startswith(head) for head in self.heads)

    def is_ignored(self, hf_name: str) -> bool:
        return any(p.match(hf_name) for p in self._ignored)


_REGISTRY: dict = {}


def register(architecture: Architecture) -> Architecture:
    """Adds an architecture (by its class name); returns it."""
    if not isinstance(architecture, Architecture):
        raise TypeError(f"register: expected an Architecture, got {type(architecture).__name__}")
    if architecture.name in _REGISTRY:
        raise ValueError(f"register: the architecture '{architecture.name}' is registered already")
    _REGISTRY[architecture.name] = architecture
    return architecture


def registered() -> dict:
    """{class name: Architecture}, in registration order."""
    return dict(_REGISTRY)


def supported_architectures() -> list:
    """The Hugging Face class names attnkit loads, in registration order."""
    return list(_REGISTRY)
