"""LoRA fine-tuning of a model: put adapters on its projections, train only
them, merge them in, and save or load them on their own in PEFT's format.

```python
from attnkit import lora
lora.apply(model, r=8, alpha=16, targets=("qkv_proj",))  # base frozen; adapters train
...                                                       # train as usual
lora.save_adapter(model, "adapter/")                      # adapter_model.safetensors + adapter_config.json
lora.merge(model)                                         # one GEMM per projection again
```

Targets are module names (the last part of a Linear's name:
``"qkv_proj"``, ``"out_proj"``, ``"fc1"``, ``"fc2"``, or a full name), and
``"q_proj"``, ``"k_proj"``, ``"v_proj"``: the query, key or value rows of a
fused ``qkv_proj``, each with an adapter of its own (how checkpoints with
separate q, k and v projections adapt them).

The files are PEFT's (``peft.PeftModel.from_pretrained`` reads them, and
``load_adapter`` reads PEFT's): tensors named
``base_model.model.<module>.lora_A.weight`` [r, in] and ``.lora_B.weight``
[out, r], where ``<module>`` is the Hugging Face name of the projection
when a Hugging Face architecture describes the model (``c_attn`` of GPT-2,
``q_proj`` of Llama; see ``attnkit.models.hf``), and attnkit's module name
otherwise; ``adapter_config.json`` holds r, lora_alpha, lora_dropout,
target_modules, fan_in_fan_out (GPT-2's Conv1D layers), use_rslora and the
base model's name.
"""

from __future__ import annotations

import json
import math
import numbers
import os

import numpy as np

from ._tensor_data import fill_from_values, float64_values, values_view
from .nn.attention import MultiHeadAttention
from .nn.linear import Linear
from .nn.lora import LoRALinear
from .nn.module import Module
from .serialization import load, save
from .tensor import from_numpy

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
PEFT_PREFIX = "base_model.model."
_QKV_PARTS = ("q_proj", "k_proj", "v_proj")


def _check_model(op: str, model) -> None:
    if not isinstance(model, Module):
        raise TypeError(f"{op}: argument 'model' expected an attnkit.nn.Module, got {type(model).__name__}")


def _qkv_rows(attention: MultiHeadAttention) -> dict:
    query = attention.num_heads * attention.head_dim
    kv = attention.num_kv_heads * attention.head_dim
    return {"q_proj": (0, query), "k_proj": (query, query + kv), "v_proj": (query + kv, query + 2 * kv)}


def _replace(model: Module, name: str, module: Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    # In place in the parent's table: the module order (and state_dict's) stays.
    parent._modules[child] = module


def apply(
    model: Module,
    r: int = 8,
    alpha: float = 16.0,
    dropout: float = 0.0,
    targets=("qkv_proj",),
    *,
    rslora: bool = False,
) -> Module:
    """Freezes every parameter of ``model`` and replaces each target Linear
    by a ``LoRALinear`` around it (same weight and bias, a new adapter of
    rank ``r``, scaling ``alpha / r``, ``dropout`` on the adapter's input):
    only the adapters train. Returns ``model`` (changed in place).

    ``targets``: names as described in the module docstring. A target that
    matches no Linear is an error (naming the Linears there are), as is a
    model that has adapters already."""
    _check_model("lora.apply", model)
    if isinstance(targets, str):
        targets = (targets,)
    targets = tuple(targets)
    if not targets or not all(isinstance(t, str) and t for t in targets):
        raise ValueError(f"lora.apply: argument 'targets' expected module names, got {targets!r}")
    if lora_modules(model):
        raise ValueError("lora.apply: the model has LoRA adapters already (lora.merge_and_unload removes them)")
    if not isinstance(r, numbers.Integral) or isinstance(r, bool) or r < 1:
        raise ValueError(f"lora.apply: argument 'r' expected an integer >= 1 (the rank), got {r!r}")
    parts = [t for t in targets if t in _QKV_PARTS]
    if parts and "qkv_proj" in targets:
        raise ValueError("lora.apply: argument 'targets' names 'qkv_proj' and its parts q/k/v_proj; choose one")

    plan = {}  # module name -> slices (None: every row)
    matched = set()
    for name, module in model.named_modules():
        if isinstance(module, MultiHeadAttention) and parts and getattr(module, "qkv_fused", False):
            rows = _qkv_rows(module)
            plan[f"{name}.qkv_proj" if name else "qkv_proj"] = [rows[p] for p in _QKV_PARTS if p in parts]
            matched.update(parts)
            continue
        if not isinstance(module, Linear):
            continue
        last = name.rpartition(".")[2]
        for target in targets:
            if target in (name, last) and target not in _QKV_PARTS:
                plan[name] = None
                matched.add(target)
    unmatched = [t for t in targets if t not in matched]
    if unmatched:
        names = sorted({n.rpartition(".")[2] for n, m in model.named_modules() if isinstance(m, Linear)})
        raise ValueError(
            f"lora.apply: argument 'targets' has {', '.join(map(repr, unmatched))}, which names no Linear of "
            f"this {type(model).__name__}; its Linears are named {', '.join(map(repr, names))}"
        )
    model.requires_grad_(False)
    for name, slices in plan.items():
        base = model.get_submodule(name)
        _replace(model, name, LoRALinear.from_linear(base, r, alpha, dropout, slices=slices, rslora=rslora))
    return model


def lora_modules(model: Module) -> list:
    """[(name, LoRALinear)] in ``model``, in module order."""
    _check_model("lora.lora_modules", model)
    return [(name, m) for name, m in model.named_modules() if isinstance(m, LoRALinear)]


def _adapted(op: str, model: Module) -> list:
    found = lora_modules(model)
    if not found:
        raise ValueError(f"{op}: the model has no LoRA adapters (lora.apply adds them)")
    return found


def merge(model: Module) -> Module:
    """Adds every adapter's update into its base weight (``LoRALinear.merge``)."""
    for _, module in _adapted("lora.merge", model):
        module.merge()
    return model


def unmerge(model: Module) -> Module:
    """Takes every merged update out of its base weight again."""
    for _, module in _adapted("lora.unmerge", model):
        module.unmerge()
    return model


def merge_and_unload(model: Module) -> Module:
    """Merges the adapters and puts plain Linears back in their place (the
    model as it was, with the updated weights, e.g. for
    ``save_pretrained``). The merged weights keep their requires_grad
    (False after ``apply``)."""
    for name, module in _adapted("lora.merge_and_unload", model):
        if not module.merged:
            module.merge()
        _replace(model, name, Linear._sharing_weights_of(module))
    return model


def adapter_state_dict(model: Module) -> dict:
    """{attnkit name: tensor} of every adapter parameter (``...lora_A``, ``...lora_B``)."""
    return {
        f"{name}.{part}": getattr(module, part)
        for name, module in _adapted("lora.adapter_state_dict", model)
        for part in ("lora_A", "lora_B")
    }


# ----------------------------------------------------- PEFT's file format ---


def _architecture_of(model):
    """The Hugging Face architecture whose weight table names every
    (non-adapter) parameter of ``model``, or None."""
    try:
        from .models.hf.loading import _rules_for
        from .models.hf.registry import registered
    except ImportError:  # pragma: no cover - the hf package is part of attnkit
        return None
    names = [n for n, _ in model.named_parameters() if not n.endswith((".lora_A", ".lora_B"))]
    candidates = list(registered().values())
    preferred = getattr(model, "hf_architecture", None)
    candidates.sort(key=lambda a: a.name != preferred)
    for architecture in candidates:
        if isinstance(model, architecture.model_class) and all(len(_rules_for(architecture, n)) == 1 for n in names):
            return architecture
    return None


def _hf_parts(model: Module, architecture, module_name: str, module: Linear) -> list:
    """[(checkpoint module name, (start, stop) rows of the attnkit weight,
    fan_in_fan_out)] of the Linear ``module_name``: one for a projection the
    checkpoint has as one matrix, several for one it stacks (q, k, v)."""
    if architecture is None:
        return [(module_name, (0, module.out_features), False)]
    from .models.hf.loading import _full_name, _rule_for

    rule, hf_names = _rule_for(architecture, f"{module_name}.weight")
    shapes = rule.transform.hf_shapes(tuple(module.weight.shape), model.config)
    parts, row = [], 0
    fan_in_fan_out = rule.transform.name == "transpose"
    for hf_name, shape in zip(hf_names, shapes):
        rows = shape[1] if fan_in_fan_out else shape[0]
        if not hf_name.endswith(".weight"):
            raise ValueError(f"lora: the checkpoint name '{hf_name}' of '{module_name}' is not a module's weight")
        parts.append((_full_name(architecture, hf_name, True)[: -len(".weight")], (row, row + rows), fan_in_fan_out))
        row += rows
    return parts


def save_adapter(model: Module, directory, *, base_model_name_or_path: str | None = None) -> None:
    """Writes the adapters of ``model`` to ``directory`` (created if needed)
    as PEFT does: ``adapter_model.safetensors`` and ``adapter_config.json``.
    The adapters must share one r, alpha, dropout and rslora setting (as
    ``apply`` makes them)."""
    modules = _adapted("lora.save_adapter", model)
    first = modules[0][1]
    for name, module in modules:
        if (module.r, module.alpha, module.lora_dropout, module.rslora) != (
            first.r,
            first.alpha,
            first.lora_dropout,
            first.rslora,
        ):
            raise ValueError(f"lora.save_adapter: '{name}' has another r, alpha, dropout or rslora than the others")
        if module.merged:
            raise ValueError(f"lora.save_adapter: '{name}' is merged; unmerge it first (its update is in the weight)")
    architecture = _architecture_of(model)
    tensors, targets, fan_in_fan_out = {}, set(), set()
    for name, module in modules:
        parts = _hf_parts(model, architecture, name, module)
        a = values_view(module.lora_A)
        b = values_view(module.lora_B)
        row = 0
        for s, (start, stop) in enumerate(module.slices):
            found = [p for p in parts if p[1] == (start, stop)]
            if not found:
                raise ValueError(
                    f"lora.save_adapter: the adapter of '{name}' on rows {start}..{stop} is not one of the "
                    f"checkpoint's projections ({', '.join(p[0] for p in parts)})"
                )
            hf_name, _, transposed = found[0]
            tensors[f"{PEFT_PREFIX}{hf_name}.lora_A.weight"] = from_numpy(a[s * module.r : (s + 1) * module.r].copy())
            tensors[f"{PEFT_PREFIX}{hf_name}.lora_B.weight"] = from_numpy(b[row : row + stop - start].copy())
            row += stop - start
            targets.add(hf_name.rpartition(".")[2])
            fan_in_fan_out.add(transposed)
    if len(fan_in_fan_out) > 1:
        raise ValueError("lora.save_adapter: the adapters mix Conv1D and Linear projections, which PEFT cannot")
    from .models import GPT

    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM" if isinstance(model, GPT) else None,
        "base_model_name_or_path": base_model_name_or_path,
        "r": first.r,
        "lora_alpha": first.alpha,
        "lora_dropout": first.lora_dropout,
        "target_modules": sorted(targets),
        "fan_in_fan_out": fan_in_fan_out.pop(),
        "bias": "none",
        "use_rslora": first.rslora,
        "use_dora": False,
        "modules_to_save": None,
        "init_lora_weights": True,
        "layers_to_transform": None,
        "layers_pattern": None,
        "rank_pattern": {},
        "alpha_pattern": {},
        "inference_mode": True,
        "revision": None,
    }
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    save(tensors, os.path.join(directory, ADAPTER_WEIGHTS))
    with open(os.path.join(directory, ADAPTER_CONFIG), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)


def read_adapter_config(directory) -> dict:
    """adapter_config.json of ``directory``, checked for what attnkit runs:
    a LoRA adapter without DoRA, bias training, modules_to_save or
    per-module ranks."""
    path = os.path.join(os.fspath(directory), ADAPTER_CONFIG)
    if not os.path.isfile(path):
        raise ValueError(f"lora.load_adapter: '{directory}' has no {ADAPTER_CONFIG} (is it a PEFT adapter directory?)")
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    if not isinstance(config, dict):
        raise ValueError(f"lora.load_adapter: {path} is not a JSON object")
    problems = []
    if config.get("peft_type") != "LORA":
        problems.append(f"peft_type is {config.get('peft_type')!r}, not 'LORA'")
    if config.get("use_dora"):
        problems.append("use_dora is set (DoRA)")
    if config.get("bias", "none") != "none":
        problems.append(f"bias is {config.get('bias')!r} (trained biases)")
    if config.get("modules_to_save"):
        problems.append(f"modules_to_save is {config.get('modules_to_save')!r}")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        problems.append("rank_pattern or alpha_pattern is set (ranks per module)")
    r, alpha = config.get("r"), config.get("lora_alpha")
    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
        problems.append(f"r is {r!r}, not a positive int")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0 < alpha < math.inf:
        problems.append(f"lora_alpha is {alpha!r}, not a positive finite number")
    if problems:
        raise ValueError(f"lora.load_adapter: {path} is not an adapter attnkit runs: " + "; ".join(problems))
    return config


def load_adapter(model: Module, directory) -> Module:
    """Loads a PEFT LoRA adapter directory into ``model``: adds adapters
    where the file has them (freezing the rest, as ``apply``) unless the
    model has them already, then fills them. Every tensor of the file must
    find its place, and every adapter of the model its tensors; shapes are
    checked; nothing is changed when something does not fit."""
    _check_model("lora.load_adapter", model)
    config = read_adapter_config(directory)
    path = os.path.join(os.fspath(directory), ADAPTER_WEIGHTS)
    if not os.path.isfile(path):
        raise ValueError(f"lora.load_adapter: '{directory}' has no {ADAPTER_WEIGHTS}")
    tensors = load(path, mmap=False)
    r, alpha = config["r"], float(config["lora_alpha"])
    rslora = bool(config.get("use_rslora", False))
    dropout = float(config.get("lora_dropout") or 0.0)

    existing = dict(lora_modules(model))
    architecture = _architecture_of(model)
    # checkpoint module name -> (attnkit module name, rows)
    places = {}
    for name, module in model.named_modules():
        if isinstance(module, Linear):
            base_name = name
            for hf_name, rows, _ in _hf_parts(model, architecture, base_name, module):
                places[hf_name] = (base_name, rows)
    found = {}  # attnkit module -> {rows: (A, B)}
    for key in tensors:
        if not key.startswith(PEFT_PREFIX) or not key.endswith((".lora_A.weight", ".lora_B.weight")):
            raise ValueError(f"lora.load_adapter: {path} has '{key}', which is no LoRA tensor of PEFT's naming")
        module_key = key[len(PEFT_PREFIX) : -len(".lora_A.weight")]
        if module_key not in places:
            raise ValueError(
                f"lora.load_adapter: {path} has an adapter for '{module_key}', which this "
                f"{type(model).__name__} does not have"
                + (f" (as {architecture.name})" if architecture is not None else "")
            )
        module_name, rows = places[module_key]
        pair = found.setdefault(module_name, {}).setdefault(rows, [None, None])
        if not tensors[key].dtype.is_floating_point:
            raise ValueError(f"lora.load_adapter: {path} has '{key}' of {tensors[key].dtype}, not a float type")
        # float16 and bfloat16 adapters widen exactly; filling rounds once to float32.
        pair[0 if key.endswith(".lora_A.weight") else 1] = float64_values(tensors[key])
    for module_name, by_rows in found.items():
        for rows, (a, b) in by_rows.items():
            if a is None or b is None:
                raise ValueError(f"lora.load_adapter: {path} has only one of lora_A and lora_B for '{module_name}'")
            base = model.get_submodule(module_name)
            if a.shape != (r, base.in_features) or b.shape != (rows[1] - rows[0], r):
                raise ValueError(
                    f"lora.load_adapter: the adapter of '{module_name}' rows {rows[0]}..{rows[1]} has shapes "
                    f"{a.shape} and {b.shape}; expected {(r, base.in_features)} and {(rows[1] - rows[0], r)} (r={r})"
                )
    if existing:
        for module_name, module in existing.items():
            if module_name not in found or sorted(found[module_name]) != list(module.slices) or module.r != r:
                raise ValueError(
                    f"lora.load_adapter: the model's adapter on '{module_name}' does not match {path} "
                    f"(rows {list(module.slices)}, r={module.r})"
                )
        extra = sorted(set(found) - set(existing))
        if extra:
            raise ValueError(f"lora.load_adapter: {path} has adapters for {extra}, which the model has none for")
    else:
        model.requires_grad_(False)
        for module_name, by_rows in found.items():
            base = model.get_submodule(module_name)
            _replace(
                model,
                module_name,
                LoRALinear.from_linear(base, r, alpha, dropout, slices=sorted(by_rows), rslora=rslora),
            )
    for module_name, by_rows in found.items():
        module = model.get_submodule(module_name)
        a_rows = np.concatenate([by_rows[rows][0] for rows in module.slices])
        b_rows = np.concatenate([by_rows[rows][1] for rows in module.slices])
        fill_from_values(module.lora_A, a_rows)
        fill_from_values(module.lora_B, b_rows)
    return model


__all__ = [
    "apply",
    "lora_modules",
    "merge",
    "unmerge",
    "merge_and_unload",
    "adapter_state_dict",
    "save_adapter",
    "load_adapter",
    "read_adapter_config",
    "ADAPTER_WEIGHTS",
    "ADAPTER_CONFIG",
]
