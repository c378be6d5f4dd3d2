"""Gradient checkpointing (Chen et al., 2016, "Training Deep Nets with
Sublinear Memory Cost"): a segment of the forward pass keeps only its
inputs; backward runs it again, with grad, to get what its ops need.

The rerun must be the same computation as the first run, bit for bit:

- random numbers: the segment's first run notes the default generator's
  state (seed and offset) and the rerun starts from it, so every dropout
  draws the stream it drew the first time; the generator is then put back
  where backward found it, so nothing after the segment sees a difference;
- kernel paths: ops that would take an inference-only path without grad
  (attention's decode path for a few queries) take the training path in the
  first run too (``grad_mode.recomputed_in_backward``).

The gradients are therefore those of the run without checkpointing, bit for
bit: the same ops, on the same inputs, in the same order.

The segment's parameters are arguments of the recorded node: a Module (or a
bound method of one) hands over its parameters, so their gradients go
through the outer backward pass like any other input's (once, with the
hooks data-parallel training relies on). Any other leaf the function
reaches (a tensor captured by a closure) gets its gradient accumulated
during the rerun, as ``backward()`` would.
"""

from __future__ import annotations

from .. import _C
from ..autograd import Function, enable_grad, is_grad_enabled, no_grad, run_backward
from ..grad_mode import _recomputed_in_backward
from ..nn.module import Module
from ..random import default_generator
from ..tensor import Tensor


class _Segment:
    """The function and its arguments, with the tensors among them taken out
    (they travel through the recorded node)."""

    def __init__(self, function, args, kwargs, tensor_positions, parameters):
        self.function = function
        # The tensors' places are left empty: the node holds them.
        self.args = [None if i in tensor_positions else a for i, a in enumerate(args)]
        self.kwargs = kwargs
        self.tensor_positions = tensor_positions
        self.parameters = parameters

    def run(self, tensors):
        args = list(self.args)
        for position, value in zip(self.tensor_positions, tensors):
            args[position] = value
        outputs = self.function(*args, **self.kwargs)
        single = isinstance(outputs, Tensor)
        outputs = (outputs,) if single else outputs
        if not isinstance(outputs, tuple) or not all(isinstance(o, Tensor) for o in outputs) or not outputs:
            raise TypeError(
                f"checkpoint: argument 'function' expected to return a Tensor or a tuple of Tensors, "
                f"got {type(outputs).__name__}"
            )
        return single, outputs


class _Seed(Function):
    """Joins several outputs into one root for ``run_backward``: its
    backward hands each output its gradient."""

    @staticmethod
    def forward(ctx, gradients, *outputs):
        ctx.gradients = gradients
        return _C.zeros([], "float32")

    @staticmethod
    def backward(ctx, grad):
        return (None, *ctx.gradients)


class _Checkpoint(Function):
    @staticmethod
    def forward(ctx, segment, *inputs):
        tensors = inputs[: len(segment.tensor_positions)]
        ctx.segment = segment
        ctx.arrays = [t._array for t in tensors]
        ctx.generator_state = default_generator.state_dict()
        with no_grad(), _recomputed_in_backward():
            single, outputs = segment.run(tensors)
        ctx.num_outputs = len(outputs)
        arrays = tuple(o._array for o in outputs)
        return arrays[0] if single else arrays

    @staticmethod
    def backward(ctx, *grads):
        segment = ctx.segment
        needs = ctx.needs_input_grad[1:]
        count = len(segment.tensor_positions)
        tensors = [Tensor._wrap(array, needed) for array, needed in zip(ctx.arrays, needs[:count])]
        resume_at = default_generator.state_dict()
        default_generator.load_state_dict(ctx.generator_state)
        try:
            with enable_grad():
                _, outputs = segment.run(tensors)
        finally:
            default_generator.load_state_dict(resume_at)
        wanted = [t for t, needed in zip(tensors, needs[:count]) if needed]
        wanted += [p for p, needed in zip(segment.parameters, needs[count:]) if needed]
        capture = {id(t): [t, None] for t in wanted}
        reached = [(o, g) for o, g in zip(outputs, grads) if o.requires_grad]
        if reached:
            root = _Seed.apply(tuple(g for _, g in reached), *(o for o, _ in reached))
            run_backward(root, _C.zeros([], "float32"), capture=capture)
        result = [None]
        for t, needed in zip(tensors, needs[:count]):
            result.append(capture[id(t)][1] if needed else None)
        for p, needed in zip(segment.parameters, needs[count:]):
            result.append(capture[id(p)][1] if needed else None)
        return tuple(result)


def _parameters_of(function) -> list:
    owner = function if isinstance(function, Module) else getattr(function, "__self__", None)
    if not isinstance(owner, Module):
        return []
    return [p for p in owner.parameters() if p.requires_grad]


def checkpoint(function, *args, **kwargs):
    """``function(*args, **kwargs)``, saving only the inputs for backward:
    backward runs ``function`` again (with grad) to compute its gradients,
    trading one more forward of the segment for its activations' memory.

    ``function`` returns a Tensor or a tuple of Tensors. The positional
    Tensor arguments get gradients; keyword arguments are passed as they are
    (masks, flags: a keyword Tensor that requires grad is refused). When
    ``function`` is a Module or a bound method of one, its parameters'
    gradients reach them through this call's node.

    Dropout and every other draw from the default generator repeat in the
    rerun, so the gradients equal those of ``function(*args)`` without
    checkpointing, bit for bit. The rerun must see what the first run saw:
    the arguments must not be changed in place in between, and the function
    must not depend on state that changes (a module's training flag, a
    cache). Without grad (or with nothing that requires grad) it is a plain
    call.
    """
    if not callable(function):
        raise TypeError(f"checkpoint: argument 'function' expected a callable, got {type(function).__name__}")
    for name, value in kwargs.items():
        if isinstance(value, Tensor) and value.requires_grad:
            raise ValueError(
                f"checkpoint: keyword argument '{name}' is a Tensor that requires grad; "
                f"pass it positionally so that it gets its gradient"
            )
    tensor_positions = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
    tensors = [args[i] for i in tensor_positions]
    parameters = _parameters_of(function)
    given = {id(t) for t in tensors}
    parameters = [p for p in parameters if id(p) not in given]
    if not is_grad_enabled() or not any(t.requires_grad for t in tensors + parameters):
        return function(*args, **kwargs)
    segment = _Segment(function, args, kwargs, tensor_positions, parameters)
    return _Checkpoint.apply(segment, *tensors, *parameters)


__all__ = ["checkpoint"]
