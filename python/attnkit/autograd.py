"""A define-by-run tape. Each differentiable op is a ``Function``: ``forward``
takes and returns native arrays and saves what ``backward`` needs on its
context; ``apply`` records a ``Node`` on the output tensor when some input
requires a gradient. ``Tensor.backward`` walks the recorded graph once in
topological order, frees each node's saved arrays as soon as it is done, and
accumulates gradients into the leaves only.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np

_state = threading.local()


def is_grad_enabled() -> bool:
    return getattr(_state, "grad_enabled", True)


@contextlib.contextmanager
def _grad_mode(enabled: bool):
    previous = is_grad_enabled()
    _state.grad_enabled = enabled
    try:
        yield
    finally:
        _state.grad_enabled = previous


def no_grad():
    """Context manager: ops inside record nothing for backward."""
    return _grad_mode(False)


def enable_grad():
    return _grad_mode(True)


class Context:
    """What a Function's forward leaves for its backward."""

    def __init__(self):
        self.saved = ()
        self.needs_input_grad = ()

    def save_for_backward(self, *arrays):
        self.saved = arrays


class Node:
    """One recorded op: its Function, its context and where its input gradients go.

    ``inputs[i]`` is the i-th argument's Node when it came from an op, the leaf
    Tensor when it is a leaf that requires a gradient, and None otherwise.
    """

    __slots__ = ("function", "ctx", "inputs", "__weakref__")

    def __init__(self, function, ctx, inputs):
        self.function = function
        self.ctx = ctx
        self.inputs = inputs

    @property
    def name(self) -> str:
        return self.function.__name__ + "Backward"

    def __repr__(self) -> str:
        return f"<{self.name}>"


class Function:
    """Subclass with static ``forward(ctx, *args)`` returning an array and
    ``backward(ctx, grad)`` returning one gradient array (or None) per argument."""

    @staticmethod
    def forward(ctx, *args):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args):
        from .tensor import Tensor

        ctx = Context()
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        record = is_grad_enabled() and any(ctx.needs_input_grad)
        output = cls.forward(ctx, *args)
        if not record:
            return Tensor._wrap(output)
        inputs = []
        for a in args:
            if isinstance(a, Tensor) and a.requires_grad:
                inputs.append(a._grad_fn if a._grad_fn is not None else a)
            else:
                inputs.append(None)
        return Tensor._wrap(output, requires_grad=True, grad_fn=Node(cls, ctx, tuple(inputs)))


def _accumulate(existing, new):
    """existing + new as a fresh native array (None counts as zero)."""
    from . import _C

    if existing is None:
        return new
    out = _C.empty(list(existing.shape), existing.dtype)
    np.add(np.asarray(existing), np.asarray(new), out=np.asarray(out))
    return out


def run_backward(root, grad, retain_graph: bool = False) -> None:
    """Backpropagates ``grad`` (a native array) from the tensor ``root``."""
    from .tensor import Tensor

    if root._grad_fn is None:
        root._accumulate_grad(grad)
        return
    # Count, for every node reachable from the root, how many gradients it
    # will receive, so each runs once with the sum of them.
    pending = {}
    stack = [root._grad_fn]
    seen = {id(root._grad_fn)}
    while stack:
        node = stack.pop()
        for child in node.inputs:
            if isinstance(child, Node):
                pending[id(child)] = pending.get(id(child), 0) + 1
                if id(child) not in seen:
                    seen.add(id(child))
                    stack.append(child)

    grads = {id(root._grad_fn): grad}
    ready = [root._grad_fn]
    while ready:
        node = ready.pop()
        if node.ctx is None:
            raise RuntimeError(
                "backward: this graph was already freed by an earlier backward(); "
                "pass retain_graph=True to the first call to backward through it twice")
        input_grads = node.function.backward(node.ctx, grads.pop(id(node)))
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        if not retain_graph:
            node.ctx = None  # frees the saved arrays now, not when the graph dies
        for child, child_grad in zip(node.inputs, input_grads):
            if child is None:
                continue
            if isinstance(child, Tensor):
                if child_grad is not None:
                    child._accumulate_grad(child_grad)
                continue
            if child_grad is not None:
                grads[id(child)] = _accumulate(grads.get(id(child)), child_grad)
            pending[id(child)] -= 1
            # A node runs once all its consumers are done, if any sent a gradient.
            if pending[id(child)] == 0 and id(child) in grads:
                ready.append(child)
