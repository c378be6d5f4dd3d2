"""Learning-rate schedules. A scheduler scales each parameter group's initial
learning rate by a factor of the step number, and is stepped after each
optimizer step, as in PyTorch:

    for batch in data:
        loss = ...; loss.backward()
        optimizer.step(); optimizer.zero_grad()
        scheduler.step()

Step numbers count from 1: the factor for step t is the one the t-th
``optimizer.step()`` uses. Construction sets the lr for t = 1; each
``scheduler.step()`` moves to the next t. A group's initial lr is kept in
the group as ``"initial_lr"`` (so it travels with the optimizer's
state_dict), and the scheduler's own ``state_dict()`` holds its position:
restoring both resumes the schedule exactly.
"""

from __future__ import annotations

import math
import numbers

from ..ops import checks
from .optimizer import Optimizer


def _ratio(op: str, argument: str, value) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{op}: argument '{argument}' expected a float, got {type(value).__name__}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{op}: argument '{argument}' expected a number in [0, 1], got {value}")
    return float(value)


class LRScheduler:
    """Base class: subclasses define ``factor(step)`` for steps 1, 2, ...;
    group i's lr for step t is ``base_lrs[i] * factor(t)``."""

    def __init__(self, optimizer: Optimizer) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"{type(self).__name__}: argument 'optimizer' expected an attnkit.optim "
                f"Optimizer, got {type(optimizer).__name__}"
            )
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_step = 0  # optimizer steps completed so far
        self._apply()

    def factor(self, step: int) -> float:
        raise NotImplementedError

    def _apply(self) -> None:
        factor = self.factor(self.last_step + 1)
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base_lr * factor
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def step(self) -> None:
        """Moves to the next step's learning rate (call after optimizer.step())."""
        self.last_step += 1
        self._apply()

    def get_last_lr(self) -> list:
        """The learning rates set for the coming optimizer step, one per group."""
        return list(self._last_lr)

    def state_dict(self) -> dict:
        """The schedule's settings and position (everything but the optimizer)."""
        return {key: value for key, value in vars(self).items() if key not in ("optimizer", "_last_lr")}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restores ``state_dict()`` and sets the lr for the next step."""
        expected = set(self.state_dict())
        if not isinstance(state_dict, dict) or set(state_dict) != expected:
            got = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
            raise ValueError(f"{type(self).__name__}.load_state_dict: expected keys {sorted(expected)}, got {got}")
        if len(state_dict["base_lrs"]) != len(self.optimizer.param_groups):
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: the saved schedule has "
                f"{len(state_dict['base_lrs'])} groups, the optimizer {len(self.optimizer.param_groups)}"
            )
        self.__dict__.update({key: (list(value) if key == "base_lrs" else value) for key, value in state_dict.items()})
        self._apply()


class InverseSqrtLR(LRScheduler):
    """The schedule of "Attention Is All You Need" (section 5.3): linear
    warmup, then decay with the inverse square root of the step:

        factor(t) = d_model^-0.5 * min(t^-0.5, t * warmup_steps^-1.5)

    The two branches meet at t = warmup_steps. With the optimizer's lr set
    to 1.0 the lr is exactly the paper's lrate (the paper: warmup_steps=4000,
    Adam with betas (0.9, 0.98), eps 1e-9); another lr scales it.
    """

    def __init__(self, optimizer: Optimizer, d_model: int, warmup_steps: int = 4000) -> None:
        self.d_model = checks.integer("InverseSqrtLR", "d_model", d_model, low=1)
        self.warmup_steps = checks.integer("InverseSqrtLR", "warmup_steps", warmup_steps, low=1)
        super().__init__(optimizer)

    def factor(self, step: int) -> float:
        return self.d_model**-0.5 * min(step**-0.5, step * self.warmup_steps**-1.5)


class _WarmupDecayLR(LRScheduler):
    """Linear warmup to the base lr over W = ``warmup_steps``, then ``decay``
    from 1 down to a floor r = ``min_lr_ratio`` (a fraction of the base lr)
    at T = ``total_steps``, and r after. ``decay(step, height)`` goes from
    ``height`` (1 - r) at W to 0 at T (each subclass keeps its formula's
    order of operations, so the rates are the same bits as ever)."""

    def __init__(self, optimizer: Optimizer, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0) -> None:
        op = type(self).__name__
        self.warmup_steps = checks.integer(op, "warmup_steps", warmup_steps, low=0)
        self.total_steps = checks.integer(op, "total_steps", total_steps, low=self.warmup_steps)
        self.min_lr_ratio = _ratio(op, "min_lr_ratio", min_lr_ratio)
        super().__init__(optimizer)

    def factor(self, step: int) -> float:
        if step <= self.warmup_steps:
            return step / self.warmup_steps
        if step > self.total_steps:
            return self.min_lr_ratio
        return self.min_lr_ratio + self.decay(step, 1.0 - self.min_lr_ratio)

    def decay(self, step: int, height: float) -> float:
        raise NotImplementedError


class WarmupCosineLR(_WarmupDecayLR):
    """Linear warmup to the base lr, then half a cosine down to a floor:

        t <= W:      t / W
        W < t <= T:  r + (1 - r) * (1 + cos(pi * (t - W) / (T - W))) / 2
        t > T:       r

    with W = ``warmup_steps``, T = ``total_steps`` and r = ``min_lr_ratio``
    (the floor as a fraction of the base lr; nanoGPT uses 0.1).
    """

    def decay(self, step: int, height: float) -> float:
        progress = (step - self.warmup_steps) / (self.total_steps - self.warmup_steps)
        return height * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupLinearLR(_WarmupDecayLR):
    """Linear warmup to the base lr, then a straight line down to a floor
    (BERT's schedule with r = 0):

        t <= W:      t / W
        W < t <= T:  r + (1 - r) * (T - t) / (T - W)
        t > T:       r

    with W = ``warmup_steps``, T = ``total_steps``, r = ``min_lr_ratio``.
    """

    def decay(self, step: int, height: float) -> float:
        return height * (self.total_steps - step) / (self.total_steps - self.warmup_steps)


__all__ = ["LRScheduler", "InverseSqrtLR", "WarmupCosineLR", "WarmupLinearLR"]
