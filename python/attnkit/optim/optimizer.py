"""Optimizers: the Optimizer base (parameter groups, state, state_dict),
AdamW on the fused native step and SGD with momentum and Nesterov, as
torch.optim's, plus ``weight_decay_groups``, which exempts biases and
normalization weights from weight decay."""

from __future__ import annotations

from collections.abc import MutableMapping

import numpy as np

from .._dtypes import float32
from .._tensor_data import clone_array, from_native, values_view
from ..autograd import enable_grad
from ..ops import checks
from ..tensor import Tensor, tensor, zeros
from .functional import adamw_

_REQUIRED = object()  # a default the caller must give (no usable value)


class ParameterState(MutableMapping):
    """The per-parameter state of an optimizer (``optimizer.state[p]``),
    keyed by the parameter object itself (identity, never by value). As
    PyTorch's defaultdict, reading the state of a parameter that has none
    yet gives (and keeps) an empty dict."""

    def __init__(self):
        self._entries = {}  # id(parameter) -> (parameter, state dict)

    def __getitem__(self, parameter):
        entry = self._entries.get(id(parameter))
        if entry is None or entry[0] is not parameter:
            self[parameter] = {}
            entry = self._entries[id(parameter)]
        return entry[1]

    def __setitem__(self, parameter, state) -> None:
        if not isinstance(parameter, Tensor):
            raise TypeError(f"optimizer state is keyed by tensors, got {type(parameter).__name__}")
        self._entries[id(parameter)] = (parameter, state)

    def __delitem__(self, parameter) -> None:
        if parameter not in self:
            raise KeyError("this parameter has no optimizer state")
        del self._entries[id(parameter)]

    def __iter__(self):
        return iter([parameter for parameter, _ in self._entries.values()])

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, parameter) -> bool:
        entry = self._entries.get(id(parameter))
        return entry is not None and entry[0] is parameter


class Optimizer:
    """Base class: holds ``param_groups`` (a list of dicts, each with its
    ``"params"`` and its own hyperparameters, the defaults filling the gaps)
    and ``state`` (per parameter, created on its first step). Subclasses
    implement ``step`` and ``_check_group``."""

    def __init__(self, params, defaults: dict) -> None:
        self.defaults = dict(defaults)
        self.state = ParameterState()
        self.param_groups = []
        if isinstance(params, Tensor) or isinstance(params, dict):
            raise TypeError(
                f"{type(self).__name__}: argument 'params' expected an iterable of tensors or of "
                f"parameter-group dicts, got {type(params).__name__}"
            )
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        if not isinstance(params[0], dict):
            params = [{"params": params}]
        for group in params:
            self.add_param_group(group)

    def _check_group(self, group: dict) -> None:
        """Validates a group's hyperparameters in place (subclass hook)."""

    def add_param_group(self, group: dict) -> None:
        """Adds a group: ``{"params": [...], "lr": ..., ...}``; missing
        hyperparameters take the optimizer's defaults. A parameter may be in
        one group only."""
        name = type(self).__name__
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{name}: a parameter group must be a dict with a 'params' entry, got {group!r}")
        params = group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError(
                f"{name}: a group's params must be an ordered sequence (a set has no stable "
                f"order, so a saved state could not be matched back)"
            )
        else:
            params = list(params)
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}: params[{i}] expected an attnkit.Tensor, got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError(
                    f"{name}: params[{i}] is not a leaf tensor (it comes from an op); "
                    f"optimize the leaf, or .detach() it first"
                )
            if not p.dtype.is_floating_point:
                raise TypeError(f"{name}: params[{i}] expected a floating-point tensor, got {p.dtype}")
        ids = {id(p) for p in params}
        if len(ids) != len(params):
            raise ValueError(f"{name}: a parameter appears twice in one group")
        for other in self.param_groups:
            if any(id(p) in ids for p in other["params"]):
                raise ValueError(f"{name}: some parameters appear in more than one parameter group")
        group = dict(group)
        group["params"] = params
        for key, default in self.defaults.items():
            if key not in group:
                if default is _REQUIRED:
                    raise ValueError(f"{name}: parameter group did not specify a value of required '{key}'")
                group[key] = default
        self._check_group(group)
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drops every parameter's gradient (``set_to_none=False``: zeroes it)."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    values_view(p.grad)[...] = 0

    def step(self, closure=None):
        raise NotImplementedError

    def _evaluate(self, closure):
        if closure is None:
            return None
        with enable_grad():
            return closure()

    def _parameters_with_gradients(self, group: dict):
        name = type(self).__name__
        for p in group["params"]:
            if p.grad is None:
                continue
            # The native arrays' dtype names and shape tuples: this runs for
            # every parameter at every step.
            if p.dtype != float32 or p.grad.dtype != float32:
                raise TypeError(
                    f"{name}.step: parameters and gradients must be float32, got a "
                    f"{p.dtype} parameter with a {p.grad.dtype} gradient"
                )
            if p.grad.shape != p.shape:
                raise ValueError(
                    f"{name}.step: a gradient of shape {p.grad.shape} does not fit its parameter of shape {p.shape}"
                )
            yield p

    # ------------------------------------------------------- state dict --
    def state_dict(self) -> dict:
        """``{"state": {index: {...}}, "param_groups": [{..., "params": [indices]}]}``
        as PyTorch lays it out: parameters are numbered in group order, and
        the state's tensors are the optimizer's own (not copies). Save it
        with ``attnkit.save``."""
        index = {}
        groups = []
        for group in self.param_groups:
            numbers_in_group = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                numbers_in_group.append(index[id(p)])
            saved = {key: value for key, value in group.items() if key != "params"}
            saved["params"] = numbers_in_group
            groups.append(saved)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p in self.state:
                    state[index[id(p)]] = dict(self.state[p])
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restores ``state_dict()``'s hyperparameters and state into this
        optimizer, built over the same parameters in the same order. The
        state's tensors are copied, so the next step is bit for bit the one
        the saved optimizer would have taken."""
        name = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            got = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
            raise ValueError(f"{name}: expected a dict with keys 'param_groups' and 'state', got {got}")
        saved_groups = state_dict["param_groups"]
        if not isinstance(saved_groups, (list, tuple)) or len(saved_groups) != len(self.param_groups):
            count = len(saved_groups) if isinstance(saved_groups, (list, tuple)) else type(saved_groups).__name__
            raise ValueError(
                f"{name}: the saved state has {count} parameter groups, this optimizer {len(self.param_groups)}"
            )
        by_index = {}
        for g, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if not isinstance(saved, dict) or not isinstance(saved.get("params"), (list, tuple)):
                raise ValueError(f"{name}: saved parameter group {g} has no 'params' list")
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"{name}: saved parameter group {g} has {len(saved['params'])} parameters, "
                    f"this optimizer's {len(group['params'])}"
                )
            for i, p in zip(saved["params"], group["params"]):
                by_index[i] = p
        state = state_dict["state"]
        if not isinstance(state, dict):
            raise ValueError(f"{name}: 'state' expected a dict, got {type(state).__name__}")
        restored = ParameterState()
        for key, entry in state.items():
            if key not in by_index:
                raise ValueError(f"{name}: the saved state names parameter {key!r}, which no group has")
            p = by_index[key]
            if not isinstance(entry, dict):
                raise ValueError(f"{name}: the state of parameter {key} expected a dict, got {type(entry).__name__}")
            copied = {}
            for field, value in entry.items():
                if isinstance(value, Tensor):
                    if tuple(value.shape) != tuple(p.shape) or value.dtype != p.dtype:
                        raise ValueError(
                            f"{name}: state '{field}' of parameter {key} is a {value.dtype} "
                            f"tensor of shape {tuple(value.shape)}, the parameter a {p.dtype} "
                            f"one of shape {tuple(p.shape)}"
                        )
                    value = from_native(clone_array(value))
                copied[field] = value
            restored[p] = copied
        new_groups = []
        for saved, group in zip(saved_groups, self.param_groups):
            new_group = {key: value for key, value in saved.items() if key != "params"}
            new_group["params"] = group["params"]
            self._check_group(new_group)
            new_groups.append(new_group)
        self.param_groups = new_groups
        self.state = restored

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(group):
                if key != "params":
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


class AdamW(Optimizer):
    """Adam with decoupled weight decay (Loshchilov and Hutter, 2019), the
    update of torch.optim.AdamW (see ``attnkit.optim.functional.adamw_``).
    Defaults are PyTorch's: lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
    weight_decay=1e-2.

    One ``step()`` updates every parameter that has a gradient with as few
    native calls as the groups allow: groups that differ only in whether
    they decay (the ``weight_decay_groups`` split) share one call. State per
    parameter: ``step`` (int), ``exp_avg`` and ``exp_avg_sq`` (float32).
    """

    def __init__(
        self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2
    ) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    def _check_group(self, group: dict) -> None:
        group["lr"] = checks.real("AdamW", "lr", group["lr"], low=0.0)
        group["eps"] = checks.real("AdamW", "eps", group["eps"], low=0.0)
        group["weight_decay"] = checks.real("AdamW", "weight_decay", group["weight_decay"], low=0.0)
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"AdamW: argument 'betas' expected a pair of floats, got {betas!r}")
        group["betas"] = (
            checks.real("AdamW", "betas[0]", betas[0], low=0.0, below=1.0),
            checks.real("AdamW", "betas[1]", betas[1], low=0.0, below=1.0),
        )

    def step(self, closure=None):
        """One update of every parameter with a gradient; returns the
        closure's loss when a closure is given (it is evaluated first)."""
        loss = self._evaluate(closure)
        # Updates that can share a native call: same step number and same
        # lr, betas and eps. Within one, every decaying parameter must share
        # the weight decay; the others are masked out of it.
        calls = {}
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in self._parameters_with_gradients(group):
                state = self.state[p]
                if not state:
                    state.update(step=0, exp_avg=zeros(p.shape), exp_avg_sq=zeros(p.shape))
                state["step"] += 1
                key = (state["step"], group["lr"], beta1, beta2, group["eps"])
                calls.setdefault(key, []).append((p, state, group["weight_decay"]))
        for (step, lr, beta1, beta2, eps), entries in calls.items():
            decays = sorted({decay for _, _, decay in entries if decay != 0.0})
            for k, decay in enumerate(decays or [0.0]):
                # the non-decaying parameters ride along with the first call
                part = [e for e in entries if e[2] == decay or (k == 0 and e[2] == 0.0)]
                adamw_(
                    [p for p, _, _ in part],
                    [p.grad for p, _, _ in part],
                    [s["exp_avg"] for _, s, _ in part],
                    [s["exp_avg_sq"] for _, s, _ in part],
                    step=step,
                    lr=lr,
                    beta1=beta1,
                    beta2=beta2,
                    eps=eps,
                    weight_decay=decay,
                    decay_mask=[d != 0.0 for _, _, d in part],
                )
        return loss


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, Nesterov
    momentum and (L2, coupled) weight decay: torch.optim.SGD's update, in
    float32 like PyTorch's, for each parameter p with gradient g:

        d = g + weight_decay * p
        b = d on the first step, else momentum * b + (1 - dampening) * d
        d = d + momentum * b if nesterov else b        (when momentum != 0)
        p = p - lr * d

    Defaults as PyTorch: lr=1e-3, momentum=0, dampening=0, weight_decay=0,
    nesterov=False (which needs momentum > 0 and dampening 0). State per
    parameter: ``momentum_buffer`` (float32) when momentum != 0.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        super().__init__(
            params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov)
        )

    def _check_group(self, group: dict) -> None:
        for key in ("lr", "momentum", "dampening", "weight_decay"):  # the update is float32
            group[key] = checks.real("SGD", key, group[key], low=0.0, below=float(np.finfo(np.float32).max))
        if not isinstance(group["nesterov"], bool):
            raise TypeError(f"SGD: argument 'nesterov' expected a bool, got {type(group['nesterov']).__name__}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                "SGD: nesterov momentum needs momentum > 0 and dampening = 0, got "
                f"momentum={group['momentum']}, dampening={group['dampening']}"
            )

    def step(self, closure=None):
        """One update of every parameter with a gradient; returns the
        closure's loss when a closure is given (it is evaluated first)."""
        loss = self._evaluate(closure)
        for group in self.param_groups:
            lr = np.float32(group["lr"])
            momentum = np.float32(group["momentum"])
            kept = np.float32(1.0 - group["dampening"])
            weight_decay = np.float32(group["weight_decay"])
            for p in self._parameters_with_gradients(group):
                weights = values_view(p)
                direction = values_view(p.grad)
                if group["weight_decay"] != 0:
                    direction = direction + weight_decay * weights
                if group["momentum"] != 0:
                    state = self.state[p]
                    if "momentum_buffer" in state:
                        buffer_values = values_view(state["momentum_buffer"])
                        buffer_values *= momentum
                        buffer_values += kept * direction
                    else:  # the first step: b = d
                        state["momentum_buffer"] = tensor(np.asarray(direction, dtype=np.float32))
                        buffer_values = values_view(state["momentum_buffer"])
                    if group["nesterov"]:
                        direction = direction + momentum * buffer_values
                    else:
                        direction = buffer_values
                weights -= lr * direction
        return loss


def weight_decay_groups(module, weight_decay: float, **group_options) -> list:
    """Two parameter groups for ``module``'s trainable parameters: those
    that decay (``weight_decay``) and those that do not (weight decay 0).
    The rule is the parameter's shape, as in nanoGPT: matrices (Linear and
    Embedding weights) decay; vectors (every bias, every LayerNorm and
    RMSNorm weight) do not, as is usual for Transformers (BERT, GPT-2).
    Extra keyword arguments (``lr=...``) go into both groups. Pass the
    result to an optimizer: ``AdamW(weight_decay_groups(model, 0.1), lr=3e-4)``.

    ``module``: anything with ``named_parameters()`` (an ``nn.Module``). A
    tied parameter is listed once, under its first name.
    """
    if not callable(getattr(module, "named_parameters", None)):
        raise TypeError(
            f"weight_decay_groups: argument 'module' expected an attnkit.nn.Module, got {type(module).__name__}"
        )
    weight_decay = checks.real("weight_decay_groups", "weight_decay", weight_decay, low=0.0)
    decay, no_decay = [], []
    for _name, p in module.named_parameters():  # each tied parameter once
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [
        dict(params=decay, weight_decay=weight_decay, **group_options),
        dict(params=no_decay, weight_decay=0.0, **group_options),
    ]


__all__ = ["Optimizer", "AdamW", "SGD", "ParameterState", "weight_decay_groups"]
