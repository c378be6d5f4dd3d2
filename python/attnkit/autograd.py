"""A define-by-run tape. Each differentiable op is a ``Function``: ``forward``
takes and returns native arrays and saves what ``backward`` needs on its
context; ``apply`` records a ``Node`` on the output tensors when some input
requires a gradient (a tensor's ``_grad_fn`` is ``(node, output_index)``).
``Tensor.backward`` walks the recorded graph once in
topological order, frees each node's saved arrays as soon as it is done, and
accumulates gradients into the leaves only. A leaf's post-accumulate-grad
hooks (``Tensor.register_post_accumulate_grad_hook``) run once per backward
pass, as soon as no further gradient can reach that leaf in the pass: what
data-parallel training needs to start reducing a gradient while the rest of
backward still runs.
"""

from __future__ import annotations

from . import _C
from .grad_mode import enable_grad, is_grad_enabled, no_grad
from .tensor import Tensor

__all__ = ["Function", "enable_grad", "is_grad_enabled", "no_grad", "run_backward"]


class Context:
    """What a Function's forward leaves for its backward."""

    def __init__(self):
        self.saved = ()
        self.needs_input_grad = ()

    def save_for_backward(self, *arrays):
        self.saved = arrays


class Node:
    """One recorded op: its Function, its context and where its input gradients go.

    ``inputs[i]`` is the i-th argument's producer when it came from an op (a
    ``(Node, output_index)`` pair), the leaf Tensor when it is a leaf that
    requires a gradient, and None otherwise.
    """

    __slots__ = ("function", "ctx", "inputs", "num_outputs", "output_meta", "__weakref__")

    def __init__(self, function, ctx, inputs, output_meta):
        self.function = function
        self.ctx = ctx
        self.inputs = inputs
        self.num_outputs = len(output_meta)
        self.output_meta = output_meta  # (shape, dtype name) per output, for zero gradients

    @property
    def name(self) -> str:
        return self.function.__name__.lstrip("_") + "Backward"

    def __repr__(self) -> str:
        return f"<{self.name}>"


class Function:
    """Subclass with static ``forward(ctx, *args)`` returning a native array
    (or a tuple of them) and ``backward(ctx, *grads)`` taking one gradient per
    output and returning one gradient array (or None) per argument. An output
    that received no gradient gets zeros."""

    @staticmethod
    def forward(ctx, *args):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args):
        # Runs once per op call: the loops are written out (no generators).
        needs_input_grad = [isinstance(a, Tensor) and a.requires_grad for a in args]
        ctx = Context()
        ctx.needs_input_grad = needs_input_grad = tuple(needs_input_grad)
        record = True in needs_input_grad and is_grad_enabled()
        output = cls.forward(ctx, *args)
        if type(output) is not tuple:
            if not record:
                return Tensor._wrap(output)
            node = Node(cls, ctx, _graph_inputs(args, needs_input_grad), ((output.shape, output.dtype),))
            return Tensor._wrap(output, True, (node, 0))
        if not record:
            return tuple([Tensor._wrap(o) for o in output])
        node = Node(cls, ctx, _graph_inputs(args, needs_input_grad), tuple([(o.shape, o.dtype) for o in output]))
        return tuple([Tensor._wrap(o, True, (node, i)) for i, o in enumerate(output)])


def _graph_inputs(args, needs_input_grad) -> tuple:
    """Node.inputs: the producer of each argument that requires a gradient
    ((Node, index), or the leaf Tensor itself), None for the others."""
    return tuple(
        [(a._grad_fn if a._grad_fn is not None else a) if needed else None for a, needed in zip(args, needs_input_grad)]
    )


def _accumulate(existing, new):
    """existing + new as a fresh native array (None counts as zero). Fresh:
    either may be shared with the graph (an op may pass its gradient on)."""
    if existing is None:
        return new
    return _C.binary(existing, new, "add")


def run_backward(root, grad, retain_graph: bool = False, capture: dict | None = None) -> None:
    """Backpropagates ``grad`` (a native array) from the tensor ``root``.

    ``capture``: {id(leaf): [leaf, None]} for leaves whose gradient is
    returned instead of accumulated: their sum lands in the second slot,
    their ``.grad`` is left alone and their hooks do not run (a checkpointed
    segment's backward hands its inputs' and parameters' gradients to the
    outer pass, which accumulates them)."""
    capture = {} if capture is None else capture
    if root._grad_fn is None:
        entry = capture.get(id(root))
        if entry is not None:
            entry[1] = _accumulate(entry[1], grad)
            return
        root._accumulate_grad(grad)
        _run_post_accumulate_grad_hooks(root)
        return
    root_node, root_index = root._grad_fn
    # Count, for every node reachable from the root, how many of its consumers
    # will report, so each runs once, with the sum of its gradients; and, for
    # every leaf with post-accumulate-grad hooks, how many nodes will report
    # to it, so its hooks run once the last of them has.
    pending = {}
    hooked_leaves = {}  # id(leaf) -> [leaf, reports still to come], in the order found
    nodes = {id(root_node): root_node}
    stack = [root_node]
    while stack:
        node = stack.pop()
        _refuse_low_precision(node)
        for child in node.inputs:
            if isinstance(child, tuple):
                child_node = child[0]
                pending[id(child_node)] = pending.get(id(child_node), 0) + 1
                if id(child_node) not in nodes:
                    nodes[id(child_node)] = child_node
                    stack.append(child_node)
            elif child is not None and id(child) not in capture and getattr(child, "_post_accumulate_grad_hooks", None):
                hooked_leaves.setdefault(id(child), [child, 0])[1] += 1

    # grads[id(node)][i]: the summed gradient of the node's i-th output so far.
    grads = {id(root_node): [None] * root_node.num_outputs}
    grads[id(root_node)][root_index] = grad
    ready = [root_node]
    while ready:
        node = ready.pop()
        if node.ctx is None:
            raise RuntimeError(
                "backward: this graph was already freed by an earlier backward(); "
                "pass retain_graph=True to the first call to backward through it twice"
            )
        output_grads = grads.pop(id(node))
        for i, g in enumerate(output_grads):
            if g is None:
                shape, dtype = node.output_meta[i]
                output_grads[i] = _C.zeros(list(shape), dtype)
        input_grads = node.function.backward(node.ctx, *output_grads)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        if not retain_graph:
            node.ctx = None  # frees the saved arrays now, not when the graph dies
        for child, child_grad in zip(node.inputs, input_grads):
            if child is None:
                continue
            if isinstance(child, Tensor):
                captured = capture.get(id(child))
                if captured is not None:
                    if child_grad is not None:
                        captured[1] = _accumulate(captured[1], child_grad)
                    continue
                if child_grad is not None:
                    child._accumulate_grad(child_grad)
                entry = hooked_leaves.get(id(child))
                if entry is not None:
                    entry[1] -= 1
                    if entry[1] == 0:
                        _run_post_accumulate_grad_hooks(child)
                continue
            child_node, index = child
            if child_grad is not None:
                slots = grads.setdefault(id(child_node), [None] * child_node.num_outputs)
                slots[index] = _accumulate(slots[index], child_grad)
            pending[id(child_node)] -= 1
            # A node runs once all its consumers are done, if any sent a gradient.
            if pending[id(child_node)] == 0 and id(child_node) in grads:
                ready.append(child_node)
    # A leaf whose consumers never ran (no gradient reached them) is final
    # too: its gradient got nothing from this pass.
    for leaf, reports in hooked_leaves.values():
        if reports > 0:
            _run_post_accumulate_grad_hooks(leaf)


def _refuse_low_precision(node) -> None:
    """bfloat16 ops run forward only (inference on a model in bfloat16; the
    backward kernels are float32): a backward through one is refused before
    any gradient is accumulated, rather than computed in the wrong dtype."""
    for _shape, dtype in node.output_meta:
        if str(dtype) in _LOW_PRECISION:
            raise RuntimeError(
                f"backward: {node.name} has a {dtype} result, and attnkit computes no gradient in {dtype} "
                f"(bfloat16 models run inference only); train in float32, with attnkit.autocast for "
                f"bfloat16 products (model.float() converts a model back)"
            )


_LOW_PRECISION = ("bfloat16", "float16")


def _run_post_accumulate_grad_hooks(leaf) -> None:
    hooks = getattr(leaf, "_post_accumulate_grad_hooks", None)
    for hook in list(hooks or ()):
        hook(leaf)
