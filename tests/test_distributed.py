"""Data parallelism in one process: the autograd hook DDP builds on."""

from __future__ import annotations

import numpy as np
import pytest

import attnkit
from attnkit import autograd, nn

# --------------------------------------------- post-accumulate-grad hook ---


def test_hook_runs_once_after_every_contribution():
    """A leaf used three times (twice by one op) gets its hook once, with the
    whole gradient already in .grad."""
    w = attnkit.tensor([1.0, 2.0, 3.0], requires_grad=True)
    seen = []
    w.register_post_accumulate_grad_hook(lambda t: seen.append(np.array(t.grad.detach())))
    x = attnkit.tensor([4.0, 5.0, 6.0])
    loss = (w * w).sum() + (w * x).sum()
    loss.backward()
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], 2 * np.array([1.0, 2.0, 3.0]) + np.array([4.0, 5.0, 6.0]))


def test_hook_order_follows_backward():
    """Hooks fire as backward finishes each leaf: the last layer's first."""
    first = nn.Linear(3, 3)
    second = nn.Linear(3, 1)
    order = []
    for name, p in [("first", first.weight), ("second", second.weight)]:
        p.register_post_accumulate_grad_hook(lambda t, name=name: order.append(name))
    second(first(attnkit.tensor(np.ones((2, 3), np.float32)))).sum().backward()
    assert order == ["second", "first"]


class _NoGradient(autograd.Function):
    """Passes its input on; sends no gradient back (as a non-differentiable path)."""

    @staticmethod
    def forward(ctx, x):
        return x._array.copy()

    @staticmethod
    def backward(ctx, grad):
        return None


def test_hook_fires_for_a_leaf_whose_gradient_stays_empty():
    """A leaf the graph reaches but no gradient does (its consumer's consumer
    sends none, so its consumer never runs) is final at the end of the pass:
    the hook still runs, once, with no gradient."""
    used = attnkit.tensor([1.0], requires_grad=True)
    idle = attnkit.tensor([2.0], requires_grad=True)
    calls = []
    idle.register_post_accumulate_grad_hook(lambda t: calls.append(t.grad))
    loss = (used * 2.0).sum() + _NoGradient.apply(idle * 3.0).sum()
    loss.backward()
    assert calls == [None]
    assert used.grad.item() == 2.0


def test_hook_on_root_leaf_and_removal():
    w = attnkit.tensor([1.0, 2.0], requires_grad=True)
    calls = []
    handle = w.register_post_accumulate_grad_hook(lambda t: calls.append(1))
    w.backward(attnkit.tensor([1.0, 1.0]))
    assert calls == [1]
    handle.remove()
    (w * 2.0).sum().backward()
    assert calls == [1]


def test_hook_refuses_non_leaves_and_non_callables():
    w = attnkit.tensor([1.0], requires_grad=True)
    with pytest.raises(TypeError, match="register_post_accumulate_grad_hook: argument 'hook'"):
        w.register_post_accumulate_grad_hook(3)
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        (w * 2.0).register_post_accumulate_grad_hook(print)
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        attnkit.tensor([1.0]).register_post_accumulate_grad_hook(print)
