"""``from_pretrained`` and ``save_pretrained``: one loader for every
registered architecture. It knows checkpoints (directories, shards, config
files); the architecture modules know the names."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import warnings

import numpy as np

from ... import _dtypes
from ..._tensor_data import set_memory, values_view
from ...nn import init
from ...serialization import save as save_safetensors
from ...tensor import from_numpy
from .checkpoint import INDEX_FILE, SINGLE_FILE, CheckpointFiles, read_json
from .registry import REQUIRED, Architecture, CheckpointError, Fixed, registered, supported_architectures

CONFIG_FILE = "config.json"
GENERATION_CONFIG_FILE = "generation_config.json"
# config.json's record of the weights' dtype (transformers 5 and 4 spellings).
_DTYPE_KEYS = ("dtype", "torch_dtype")
# Config fields of every attnkit model that shape training, not the
# checkpoint (an architecture adds its own in Architecture.free_fields).
TRAINING_FIELDS = ("gradient_checkpointing",)


# ------------------------------------------------------------ choosing ---


def _directory(op: str, path) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"{op}: argument 'path' expected a directory path (str or os.PathLike), got {type(path).__name__}"
        )
    directory = os.fspath(path)
    if os.path.isdir(directory):
        return directory
    if os.path.exists(directory):
        raise CheckpointError(f"{op}: '{directory}' is a file; expected a model directory holding config.json")
    looks_like_hub_name = re.fullmatch(r"[\w.-]+/[\w.-]+", directory) is not None
    hint = (
        " It looks like a model name on the Hugging Face hub: attnkit never downloads (no network access). "
        "Download it first, e.g. `huggingface-cli download NAME --local-dir DIR`, and pass DIR."
        if looks_like_hub_name
        else " attnkit loads local directories only; it never downloads."
    )
    raise CheckpointError(f"{op}: '{directory}' is not a local directory.{hint}")


def _supported() -> str:
    return ", ".join(supported_architectures())


def _architecture(op: str, hf_config: dict, directory: str) -> Architecture:
    """The registered architecture config.json names: its ``architectures``
    list first, then its ``model_type``."""
    table = registered()
    names = hf_config.get("architectures") or []
    if not isinstance(names, list):
        names = [names]
    for name in names:
        if name in table:
            return table[name]
    model_type = hf_config.get("model_type")
    if not names:
        for architecture in table.values():
            if architecture.model_type == model_type and architecture.default_for_type:
                return architecture
    what = f"architectures {names}" if names else f"model_type {model_type!r}"
    raise CheckpointError(
        f"{op}: the checkpoint in '{directory}' is {what}, which attnkit does not load; supported: {_supported()}"
    )


# -------------------------------------------------------------- config ---


def config_from_hf(architecture: Architecture, hf_config: dict, names: set, source: str):
    """The attnkit config for config.json's values (``names``: the
    checkpoint's tensor names, base prefix removed)."""
    values = {}
    for entry in architecture.fields:
        if isinstance(entry, Fixed):
            if not entry.accepts(hf_config):
                allowed = ", ".join(repr(v) for v in (entry.value, *entry.also))
                raise CheckpointError(
                    f"{source}: '{entry.hf}' is {hf_config.get(entry.hf)!r}; attnkit's {architecture.name} "
                    f"runs {allowed} only"
                )
            continue
        if entry.hf in hf_config and hf_config[entry.hf] is not None:
            values[entry.attnkit] = hf_config[entry.hf]
        elif entry.default is not REQUIRED:
            values[entry.attnkit] = entry.default
        else:
            raise CheckpointError(f"{source}: the field '{entry.hf}' is missing; {architecture.name} needs it")
    if architecture.check is not None:
        architecture.check(hf_config)
    if architecture.derive is not None:
        values.update(architecture.derive(hf_config, names))
    try:
        return architecture.config_class(**values)
    except (TypeError, ValueError) as error:
        raise CheckpointError(
            f"{source}: the values do not make a {architecture.config_class.__name__}: {error}"
        ) from None


def config_to_hf(architecture: Architecture, config, base: dict | None = None) -> dict:
    """config.json for an attnkit config: ``base`` (the config.json the
    model was loaded from, keeping what attnkit does not model: labels,
    task settings) updated with every field of the table."""
    hf_config = {key: value for key, value in (base or {}).items() if key not in _DTYPE_KEYS}
    hf_config["architectures"] = [architecture.name]
    hf_config["model_type"] = architecture.model_type
    for entry in architecture.fields:
        hf_config[entry.hf] = entry.value if isinstance(entry, Fixed) else getattr(config, entry.attnkit)
    if architecture.to_hf_extra is not None:
        hf_config.update(architecture.to_hf_extra(config, base or {}))
    hf_config["dtype"] = "float32"
    return dict(sorted(hf_config.items()))


# ------------------------------------------------------------- weights ---


def _model_weights(model) -> list:
    """(name, tensor) for every parameter and persistent buffer, a tied one
    once (under its first name)."""
    seen, weights = set(), []
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) not in seen:
            seen.add(id(tensor))
            weights.append((name, tensor))
    return weights


def _rules_for(architecture: Architecture, name: str, config=None) -> list:
    """[(Weight rule, its HF names with {i} and {e} filled)] for the attnkit
    name: exactly one in a table that covers the model. ``config`` (the
    model's) gives the number of experts; a rule with ``{e}`` needs it."""
    found = []
    for rule in architecture.weights:
        match = rule.pattern().match(name)
        if match:
            found.append((rule, rule.hf_names(match.groupdict(), config)))
    return found


def _rule_for(architecture: Architecture, name: str, config=None) -> tuple:
    found = _rules_for(architecture, name, config)
    if len(found) != 1:
        # A gap or an overlap in the table: a bug in the architecture module.
        raise RuntimeError(
            f"the weight table of {architecture.name} has {len(found)} rules for the attnkit parameter '{name}'"
        )
    return found[0]


def _full_name(architecture: Architecture, hf_name: str, prefixed: bool) -> str:
    if prefixed and not architecture.is_head(hf_name):
        return architecture.base_prefix + hf_name
    return hf_name


def _plan(architecture: Architecture, model, config, files: CheckpointFiles, prefixed: bool, source: str) -> list:
    """[(attnkit tensor, rule, [checkpoint names])], after checking that the
    checkpoint has every weight the model needs, in its shape, and nothing
    else. Reads headers only."""
    plan, used = [], set()
    missing, mismatched, not_float = [], [], []
    for name, tensor in _model_weights(model):
        rule, hf_names = _rule_for(architecture, name, config)
        full_names = [_full_name(architecture, hf, prefixed) for hf in hf_names]
        expected = rule.transform.hf_shapes(tuple(tensor.shape), config)
        for full, shape in zip(full_names, expected):
            if full not in files.entries:
                missing.append(full)
                continue
            used.add(full)
            if files.entries[full].dtype.name not in ("float32", "float16", "bfloat16"):
                not_float.append(f"'{full}' is {files.entries[full].dtype}")
            if tuple(files.entries[full].shape) != tuple(shape):
                mismatched.append(
                    f"'{full}': the checkpoint has {list(files.entries[full].shape)}, config.json implies {list(shape)}"
                )
        plan.append((tensor, rule, full_names))
    for alias, original in architecture.tied:
        alias_full, original_full = (_full_name(architecture, hf, prefixed) for hf in (alias, original))
        # A model with an output head of its own (untied) loads the alias as a weight: no tie to check.
        if alias_full in files.entries and alias_full not in used:
            used.add(alias_full)
            if original_full in files.entries and not _same_values(files, alias_full, original_full):
                raise CheckpointError(
                    f"{source}: '{alias_full}' differs from '{original_full}': the checkpoint's output head is "
                    f"not tied to its embedding, and attnkit's {architecture.name} ties them"
                )
    unexpected = sorted(
        name
        for name in files.entries
        if name not in used and not architecture.is_ignored(_local_name(architecture, name, prefixed))
    )
    problems = []
    if missing:
        problems.append("missing weights: " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected weights (attnkit's model has no place for them): " + ", ".join(unexpected))
    if mismatched:
        problems.append("shape mismatches: " + "; ".join(mismatched))
    if not_float:
        problems.append("weights must be float32, float16 or bfloat16: " + ", ".join(not_float))
    if problems:
        raise CheckpointError(f"{source}: the weights do not fit {architecture.name}: " + "; ".join(problems))
    return plan


def _same_values(files: CheckpointFiles, first: str, second: str) -> bool:
    if files.entries[first].shape != files.entries[second].shape:
        return False
    same = np.array_equal(files.float32(first), files.float32(second))
    files.release(first)
    return same


def _local_name(architecture: Architecture, name: str, prefixed: bool) -> str:
    if prefixed and name.startswith(architecture.base_prefix):
        return name[len(architecture.base_prefix) :]
    return name


def _fill(plan: list, files: CheckpointFiles, config) -> None:
    """Writes the checkpoint's values into the model. A float32 tensor
    taken as it is becomes the parameter's memory (memory-mapped, no copy);
    every other one is converted into the parameter's own memory, and its
    pages of the file are dropped once copied."""
    shared = {names[0] for _, rule, names in plan if rule.transform.name == "identity" and files.shareable(names[0])}
    for tensor, rule, names in plan:
        if names[0] in shared and len(names) == 1:
            values = files.float32(names[0])
            set_memory(tensor, from_numpy(values))
            continue
        destination = values_view(tensor)
        if rule.transform.stacked is not None and rule.transform.stacked(config):
            if len(names) == 1:
                files.float32_into(names[0], destination)
            else:
                # Each part into its rows: the parameter seen as rows of a part's
                # trailing shape (a view: setting .shape refuses to copy), so an
                # expert's [rows, d] lands in its slice of [n_experts, rows, d].
                # Stacked parts are copied, never memory-mapped.
                flat = destination.view()
                flat.shape = (-1, *files.entries[names[0]].shape[1:])
                row = 0
                for name in names:
                    rows = files.entries[name].shape[0]
                    files.float32_into(name, flat[row : row + rows])
                    row += rows
        else:
            destination[...] = rule.transform.to_attnkit([files.float32(name) for name in names], config)
        for name in names:
            if name not in shared:
                files.release(name)


# ---------------------------------------------------------- the public ---


def _resolved_dtype(op: str, dtype):
    """float32 (for None) or bfloat16: the dtypes a model loads in."""
    if dtype is None:
        return _dtypes.float32
    try:
        resolved = _dtypes.as_dtype(dtype, f"{op}: argument 'dtype'")
    except TypeError:
        resolved = None
    if resolved not in (_dtypes.float32, _dtypes.bfloat16):
        raise ValueError(f"{op}: argument 'dtype' expected None, float32 or bfloat16, got {dtype!r}")
    return resolved


def read_generation_config(directory: str):
    """generation_config.json as a dict, or None when the directory has none."""
    path = os.path.join(directory, GENERATION_CONFIG_FILE)
    return read_json(path, "the generation config") if os.path.isfile(path) else None


def _tokenizer(directory: str):
    """The directory's tokenizer, or None where it has none. Without the
    package it needs (the hf extra) the model still loads, with a warning."""
    from ...data.pretrained_tokenizer import MARIAN_FILES, TOKENIZER_FILE, Tokenizer

    present = os.path.isfile(os.path.join(directory, TOKENIZER_FILE)) or all(
        os.path.isfile(os.path.join(directory, name)) for name in MARIAN_FILES
    )
    if not present:
        return None
    try:
        return Tokenizer.from_pretrained(directory)
    except ImportError as error:
        warnings.warn(f"from_pretrained: the tokenizer in '{directory}' was not loaded: {error}", stacklevel=3)
        return None


def from_pretrained(path, dtype=None):
    """The attnkit model of a Hugging Face checkpoint directory.

    ``path``: a local directory with config.json and model.safetensors (or
    shards listed by model.safetensors.index.json). Nothing is downloaded:
    a name that is not a local directory is refused. The class is config.json's
    ``architectures`` (or its ``model_type``); ``attnkit.models.hf.
    supported_architectures()`` lists those attnkit loads.

    ``dtype``: None or float32 (the default): float16 and bfloat16
    checkpoints are widened to float32 exactly. float32 tensors that need no
    rearranging stay memory-mapped (copy-on-write): the pages are read as
    they are used, and loading needs no second copy of the file.
    ``attnkit.bfloat16``: the model for bfloat16 inference (as
    ``.to(attnkit.bfloat16)`` after a float32 load, which is how it is done:
    a bfloat16 checkpoint's values come back bit for bit, float32 and
    float16 ones are rounded once, to nearest; the float32 model exists
    while loading).

    Every check comes before any weight is read: an unknown architecture,
    a config attnkit cannot run, a missing or unexpected weight, a shape
    that config.json does not imply, or a malformed shard raises
    ``CheckpointError`` (a ValueError) naming the field, key or file, and
    nothing is returned.

    The model comes back in eval mode, with ``hf_config`` (config.json),
    ``generation_config`` (generation_config.json, or None),
    ``hf_architecture`` (the class name) and ``tokenizer`` (an
    ``attnkit.data.Tokenizer`` when the directory has one and the hf extra
    is installed, else None) attached; ``save_pretrained`` writes them back.
    """
    op = "from_pretrained"
    directory = _directory(op, path)
    dtype = _resolved_dtype(op, dtype)
    config_path = os.path.join(directory, CONFIG_FILE)
    hf_config = read_json(config_path, "the model config")
    architecture = _architecture(op, hf_config, directory)
    files = CheckpointFiles(directory)
    prefix = architecture.base_prefix
    prefixed = bool(prefix) and any(name.startswith(prefix) for name in files.entries)
    local_names = {_local_name(architecture, name, prefixed) for name in files.entries}
    config = config_from_hf(architecture, hf_config, local_names, config_path)
    generation_config = read_generation_config(directory)
    try:
        with init.skip_init():
            model = architecture.model_class(config)
    except (TypeError, ValueError) as error:  # the model checks its config as it builds (GPT's top_k, ...)
        raise CheckpointError(
            f"{config_path}: the values do not make a {architecture.model_class.__name__}: {error}"
        ) from None
    plan = _plan(architecture, model, config, files, prefixed, directory)
    _fill(plan, files, config)
    if dtype != _dtypes.float32:
        model.to(dtype)
    model.eval()
    model.hf_config = hf_config
    model.hf_architecture = architecture.name
    model.generation_config = generation_config
    model.tokenizer = _tokenizer(directory)
    return model


def _misfit(architecture: Architecture, model) -> str | None:
    """Why ``architecture`` cannot hold ``model`` exactly, or None when it
    can: every weight has a rule, and the config written as config.json
    and read back is the model's config (training-only fields aside)."""
    names = set()
    for name, _ in _model_weights(model):
        found = _rules_for(architecture, name, model.config)
        if len(found) != 1:
            return f"{architecture.name} has no place for '{name}'"
        names.update(found[0][1])
    try:
        hf_config = config_to_hf(architecture, model.config, getattr(model, "hf_config", None))
        back = config_from_hf(architecture, hf_config, names, architecture.name)
    except CheckpointError as error:
        return str(error)
    resolved = lambda config: config.resolved() if hasattr(config, "resolved") else config  # noqa: E731
    ours, theirs = dataclasses.asdict(resolved(model.config)), dataclasses.asdict(resolved(back))
    differing = [
        f"{field}={ours[field]!r} (it has {theirs[field]!r})"
        for field in ours
        if field not in (*architecture.free_fields, *TRAINING_FIELDS) and ours[field] != theirs.get(field)
    ]
    return f"{architecture.name} cannot express {', '.join(differing)}" if differing else None


def _architecture_for_saving(model) -> Architecture:
    """The first registered class that expresses the model exactly."""
    reasons = []
    for architecture in registered().values():
        if isinstance(model, architecture.model_class):
            reason = _misfit(architecture, model)
            if reason is None:
                return architecture
            reasons.append(reason)
    raise CheckpointError(
        f"save_pretrained: no Hugging Face architecture that attnkit writes fits this {type(model).__name__}"
        + (f": {'; '.join(reasons)}" if reasons else f" (supported: {_supported()})")
    )


def _write_json(path: str, value: dict) -> None:
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(temporary, path)


def _remove_old_weights(directory: str, keep: set) -> None:
    """Removes the weight files of a checkpoint saved here before that the
    new one does not overwrite: a single file would shadow new shards (it is
    read first), and old shards would be stale weights left behind."""
    index_path = os.path.join(directory, INDEX_FILE)
    old = {SINGLE_FILE}
    if os.path.isfile(index_path):
        try:
            old |= set((read_json(index_path, "the shard index").get("weight_map") or {}).values())
        except CheckpointError:
            pass
        old.add(INDEX_FILE)
    for file in old - keep:
        if (
            isinstance(file, str)
            and os.path.basename(file) == file
            and (file.endswith(".safetensors") or file == INDEX_FILE)
        ):
            candidate = os.path.join(directory, file)
            if os.path.isfile(candidate):
                os.unlink(candidate)


_SIZE_UNITS = {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "KB": 10**3, "MB": 10**6, "GB": 10**9, "B": 1}


def _shard_bytes(max_shard_size) -> int:
    """Bytes from an int or a string such as "5GB" (10^9) or "500MiB" (2^20),
    as transformers reads ``max_shard_size``."""
    op = "save_pretrained"
    if isinstance(max_shard_size, int) and not isinstance(max_shard_size, bool):
        if max_shard_size < 1:
            raise ValueError(f"{op}: argument 'max_shard_size' expected a positive size, got {max_shard_size}")
        return max_shard_size
    if isinstance(max_shard_size, str):
        text = max_shard_size.strip().upper()
        for unit, scale in _SIZE_UNITS.items():
            if text.endswith(unit):
                try:
                    value = float(text[: -len(unit)])
                except ValueError:
                    break
                if math.isfinite(value) and value * scale >= 1:
                    return int(value * scale)
                break
    raise ValueError(
        f"{op}: argument 'max_shard_size' expected a number of bytes or a size such as '5GB' or '500MiB', "
        f"got {max_shard_size!r}"
    )


def _shards(tensors: dict, limit: int) -> list:
    """The tensors' names in groups of at most ``limit`` bytes, in order (a
    tensor larger than ``limit`` is a shard of its own)."""
    groups, size = [[]], 0
    for name, array in tensors.items():
        if groups[-1] and size + array.nbytes > limit:
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += array.nbytes
    return groups


def hf_state_dict(model, architecture: Architecture | None = None) -> dict:
    """{checkpoint name: float32 numpy array}: the model's weights as the
    Hugging Face class names and lays them out."""
    architecture = architecture or _architecture_for_saving(model)
    tensors = {}
    for name, tensor in _model_weights(model):
        rule, hf_names = _rule_for(architecture, name, model.config)
        if tensor.dtype != _dtypes.float32:
            raise CheckpointError(f"save_pretrained: '{name}' is {tensor.dtype}; attnkit writes float32 checkpoints")
        values = values_view(tensor)
        for hf_name, array in zip(hf_names, rule.transform.to_hf(values, model.config)):
            tensors[_full_name(architecture, hf_name, True)] = np.ascontiguousarray(array, dtype=np.float32)
    return tensors


def save_pretrained(model, path, *, tokenizer=None, max_shard_size="5GB") -> None:
    """Writes ``model`` as a Hugging Face checkpoint directory that
    ``transformers``' ``from_pretrained`` (and attnkit's) loads: config.json,
    model.safetensors (float32; above ``max_shard_size``, shards
    model-0000i-of-0000n.safetensors listed by model.safetensors.index.json,
    as transformers writes them), generation_config.json when the model has
    one, and the tokenizer files of ``tokenizer`` (default: ``model.tokenizer``,
    set by ``from_pretrained``; one of attnkit's own tokenizers, as
    ``attnkit train`` makes, is written as tokenizer.json). The class
    is the first registered architecture that fits the model (an attnkit
    GPT is a GPT2LMHeadModel). Files are written whole and renamed into
    place, so an interrupted save leaves no half-written file."""
    op = "save_pretrained"
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{op}: argument 'path' expected a directory path, got {type(path).__name__}")
    directory = os.fspath(path)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise CheckpointError(f"{op}: '{directory}' is a file; expected a directory (it is created if absent)")
    architecture = _architecture_for_saving(model)
    hf_config = config_to_hf(architecture, model.config, getattr(model, "hf_config", None))
    limit = _shard_bytes(max_shard_size)
    arrays = hf_state_dict(model, architecture)
    groups = _shards(arrays, limit)
    os.makedirs(directory, exist_ok=True)
    if len(groups) == 1:
        _remove_old_weights(directory, keep={SINGLE_FILE})
        save_safetensors({name: from_numpy(a) for name, a in arrays.items()}, os.path.join(directory, SINGLE_FILE))
    else:
        files = [f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))]
        _remove_old_weights(directory, keep=set(files))
        for file, names in zip(files, groups):
            save_safetensors({name: from_numpy(arrays[name]) for name in names}, os.path.join(directory, file))
        index = {
            "metadata": {"total_size": sum(a.nbytes for a in arrays.values())},
            "weight_map": {name: file for file, names in zip(files, groups) for name in names},
        }
        _write_json(os.path.join(directory, INDEX_FILE), index)  # last: the shards it names exist
    _write_json(os.path.join(directory, CONFIG_FILE), hf_config)
    generation_config = getattr(model, "generation_config", None)
    if generation_config:
        _write_json(os.path.join(directory, GENERATION_CONFIG_FILE), generation_config)
    tokenizer = getattr(model, "tokenizer", None) if tokenizer is None else tokenizer
    if tokenizer is not None:
        from ...data.pretrained_tokenizer import Tokenizer

        if not isinstance(tokenizer, Tokenizer):
            tokenizer = Tokenizer.from_attnkit(tokenizer)
        tokenizer.save_pretrained(directory)


__all__ = ["from_pretrained", "save_pretrained", "hf_state_dict", "config_from_hf", "config_to_hf"]
