"""DistributedDataParallel: one model replica per MPI rank, gradients
averaged across the ranks during backward.

Every rank runs the same model on its own part of the batch. The gradients
are averaged in buckets of about ``bucket_mb`` MiB: the parameters, in the
reverse of their registration order (roughly the order backward finishes
them), are packed into flat float32 buffers, and a bucket's non-blocking
all-reduce (``MPI_Iallreduce``) starts as soon as every gradient in it is
final (autograd's post-accumulate-grad hook), while backward goes on with
the layers below. MPI moves a non-blocking collective forward only inside
MPI calls, so each hook also polls the buckets in flight; the last hook
waits for them, divides by the world size and leaves each parameter's
``.grad`` as a view of its bucket. Buckets start in index order on every
rank: collectives must be issued in the same order everywhere.
"""

from __future__ import annotations

import contextlib
import numbers
import time

import numpy as np

from .. import distributed
from .._tensor_data import values_view
from ..autograd import is_grad_enabled, no_grad
from ..distributed import collectives, world
from ..tensor import Tensor, from_numpy
from .module import Module

DEFAULT_BUCKET_MB = 25.0


class _Bucket:
    """Parameters whose gradients travel in one all-reduce: their flat
    buffer, each one's slice of it, and what the current backward has
    left to report."""

    def __init__(self, parameters: list) -> None:
        self.parameters = parameters
        sizes = [p.numel() for p in parameters]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.buffer = np.zeros(int(self.offsets[-1]), np.float32)
        # The .grad each parameter gets after a reduction: a view of its slice.
        self.grad_views = [
            from_numpy(self.buffer[start:end].reshape(p.shape))
            for p, start, end in zip(parameters, self.offsets[:-1], self.offsets[1:])
        ]
        self.waiting_for = set()  # ids of the parameters whose gradient is not final yet in this backward
        self.request = None

    def pack(self) -> None:
        """Copies the gradients into the buffer (zeros for a parameter that got none)."""
        for p, view, start, end in zip(self.parameters, self.grad_views, self.offsets[:-1], self.offsets[1:]):
            if p.grad is view:
                continue  # accumulated straight into the buffer (a grad not set to None since)
            segment = self.buffer[start:end]
            if p.grad is None:
                segment[...] = 0.0
            else:
                segment[...] = values_view(p.grad).reshape(-1)

    def unpack_mean(self, world_size: int) -> None:
        """The sum in the buffer becomes the mean; every parameter's .grad views it."""
        if world_size > 1:
            self.buffer /= np.float32(world_size)  # rounded once, as a single process would divide
        for p, view in zip(self.parameters, self.grad_views):
            p.grad = view


def _tensors_in(value):
    """The tensors in a forward's output (a tensor, or lists, tuples and dict values of them)."""
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors_in(item)


def _leaves_reached(outputs) -> set:
    """The ids of the leaf tensors that the outputs' recorded graph reaches."""
    leaves, seen, stack = set(), set(), []
    for t in outputs:
        if t._grad_fn is None:
            leaves.add(id(t))
        else:
            stack.append(t._grad_fn[0])
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        for child in node.inputs:
            if isinstance(child, tuple):
                stack.append(child[0])
            elif child is not None:
                leaves.add(id(child))
    return leaves


class DistributedDataParallel(Module):
    """Wraps ``module`` for data-parallel training over the MPI ranks (see
    the module docstring). At construction every rank takes rank 0's
    parameters and buffers. Call the wrapper as the model; after
    ``loss.backward()`` every parameter's ``.grad`` is the mean of the
    ranks' gradients, the same on every rank, and the optimizer steps as
    in one process.

    ``bucket_mb``: the size of a gradient bucket in MiB (25, as PyTorch):
    smaller buckets start communicating earlier in backward, larger ones pay
    MPI's per-message cost fewer times. ``no_sync()`` skips the averaging
    for gradient accumulation. Parameters must be float32. A parameter the
    forward did not use counts as a zero gradient on that rank. Calls
    ``attnkit.distributed.init()`` if nobody has.

    ``comm_wait_s``: the seconds the last averaging backward spent waiting
    for the all-reduces after its last gradient was final (communication
    that backward did not hide).
    """

    def __init__(self, module: Module, bucket_mb: float = DEFAULT_BUCKET_MB) -> None:
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(
                f"DistributedDataParallel: argument 'module' expected an attnkit.nn.Module, got {type(module).__name__}"
            )
        if isinstance(bucket_mb, bool) or not isinstance(bucket_mb, numbers.Real) or not 0 < bucket_mb < 2**20:
            raise ValueError(
                f"DistributedDataParallel: argument 'bucket_mb' expected a positive number, got {bucket_mb!r}"
            )
        self.module = module
        distributed.init()
        self.world_size = distributed.get_world_size()
        parameters = [p for p in module.parameters() if p.requires_grad]
        for name, p in module.named_parameters():
            if p.requires_grad and p.dtype.name != "float32":
                raise TypeError(f"DistributedDataParallel: parameter '{name}' is {p.dtype}; only float32 is averaged")
        with no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                distributed.broadcast(tensor, src=0)
        self._buckets = self._make_buckets(parameters, int(bucket_mb * 2**20))
        self._bucket_of = {}
        for index, bucket in enumerate(self._buckets):
            for p in bucket.parameters:
                self._bucket_of[id(p)] = index
                p.register_post_accumulate_grad_hook(self._gradient_ready)
        self._sync = True
        self._averaging = False  # the forward ran and its backward is to average the gradients
        self._reported = False  # some gradient of that backward has come
        self._next_bucket = 0
        self.comm_wait_s = 0.0

    @staticmethod
    def _make_buckets(parameters: list, capacity_bytes: int) -> list:
        buckets, current, size = [], [], 0
        for p in reversed(parameters):
            if current and size + p.nbytes > capacity_bytes:
                buckets.append(_Bucket(current))
                current, size = [], 0
            current.append(p)
            size += p.nbytes
        if current:
            buckets.append(_Bucket(current))
        return buckets

    @property
    def bucket_sizes(self) -> list:
        """The number of gradient elements in each bucket, in the order they are reduced."""
        return [len(bucket.buffer) for bucket in self._buckets]

    @contextlib.contextmanager
    def no_sync(self):
        """Inside, backward leaves the gradients local (they accumulate);
        the first backward outside averages everything accumulated."""
        previous = self._sync
        self._sync = False
        try:
            yield
        finally:
            self._sync = previous

    def forward(self, *args, **kwargs):
        if self._averaging and self._reported:
            waiting = set().union(*(bucket.waiting_for for bucket in self._buckets))
            unfinished = [name for name, p in self.module.named_parameters() if id(p) in waiting]
            raise RuntimeError(
                "DistributedDataParallel: the previous backward did not average every gradient: the loss did "
                f"not depend on {', '.join(unfinished[:5])}{' ...' if len(unfinished) > 5 else ''}; "
                "every output that the forward returns with a graph must reach the loss"
            )
        output = self.module(*args, **kwargs)
        averaging = self.world_size > 1 and self._sync and is_grad_enabled() and bool(self._buckets)
        self._averaging = averaging
        self._reported = False
        if averaging:
            # Parameters the graph does not reach get no hook call in backward: ready now.
            reached = _leaves_reached(list(_tensors_in(output)))
            for bucket in self._buckets:
                bucket.waiting_for = {id(p) for p in bucket.parameters if id(p) in reached}
                bucket.request = None
            self._next_bucket = 0
        return output

    def _gradient_ready(self, parameter: Tensor) -> None:
        if not self._averaging:
            return  # no_sync, the wrapped model used on its own, or a backward after the averaging
        self._reported = True
        buckets = self._buckets
        bucket = buckets[self._bucket_of[id(parameter)]]
        if bucket.request is not None:
            raise RuntimeError(
                "DistributedDataParallel: a parameter's gradient came after its bucket was averaged: the loss "
                "uses the parameter outside the wrapped model's forward (or a forward output left out of the loss)"
            )
        bucket.waiting_for.discard(id(parameter))
        index = self._next_bucket
        while index < len(buckets) and not buckets[index].waiting_for:
            buckets[index].pack()
            buckets[index].request = collectives.start_all_reduce_sum(buckets[index].buffer)
            index += 1
        self._next_bucket = index
        in_flight = [b.request for b in buckets[:index]]
        if index < len(buckets):
            world.poll(in_flight)
            return
        start = time.perf_counter()
        world.wait(in_flight, f"the gradient all-reduce ({len(buckets)} buckets)")
        self.comm_wait_s = time.perf_counter() - start
        for bucket in buckets:
            bucket.unpack_mean(self.world_size)
        self._averaging = False

    def extra_repr(self) -> str:
        return f"world_size={self.world_size}, buckets={len(self._buckets)}"


__all__ = ["DistributedDataParallel", "DEFAULT_BUCKET_MB"]
