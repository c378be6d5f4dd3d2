"""Collectives on attnkit tensors: all_reduce, broadcast, all_gather, barrier.

Each hands MPI a numpy view of the tensor's own memory through the buffer
interface (no copy, no pickling), starts the non-blocking form of the
collective and waits for it with ``world.wait`` (deadline, abort). MPI has
no arithmetic for 16-bit floats in every implementation (MPICH lacks
bfloat16), so their sums use an MPI operation of ours over the 16-bit
patterns: each addition is done in float32 and rounded once to the dtype,
which is the correctly rounded 16-bit sum (float32 holds more than twice
their precision, so the double rounding cannot change it).
"""

from __future__ import annotations

import pickle

import numpy as np

from .. import _dtypes
from .._tensor_data import raw_bytes, values_view
from ..autograd import is_grad_enabled
from ..tensor import Tensor, empty
from .world import DistributedError, _require_init, wait

_REDUCE_OPS = ("sum", "mean")


def _check_tensor(op: str, argument: str, tensor, *, in_place: bool) -> None:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{op}: argument '{argument}' expected an attnkit.Tensor, got {type(tensor).__name__}")
    if tensor.device.type != "cpu":
        raise DistributedError(f"{op}: argument '{argument}' expected a CPU tensor, got one on {tensor.device}")
    if in_place and tensor.requires_grad and is_grad_enabled():
        raise RuntimeError(
            f"{op}: argument '{argument}' requires grad and would be changed in place while gradients are "
            f"recorded; use 'with attnkit.no_grad():'"
        )


def _typed_view(world, tensor: Tensor) -> tuple:
    """(a numpy view of the tensor's memory, the MPI datatype of its elements).
    16-bit floats travel as their bit patterns."""
    MPI = world.MPI
    name = tensor.dtype.name
    if name in ("float16", "bfloat16"):
        return raw_bytes(tensor).view(np.uint16), MPI.UINT16_T
    datatype = {"float32": MPI.FLOAT, "int32": MPI.INT32_T, "int64": MPI.INT64_T, "bool": MPI.C_BOOL}[name]
    return values_view(tensor), datatype


def _add_float16(incoming, accumulated, datatype) -> None:
    total = np.frombuffer(accumulated, np.float16)
    total += np.frombuffer(incoming, np.float16)  # numpy adds in float32 and rounds once


def _add_bfloat16(incoming, accumulated, datatype) -> None:
    total = np.frombuffer(accumulated, np.uint16)
    addend = np.frombuffer(incoming, np.uint16)
    total[...] = _dtypes.float32_to_bfloat16_bits(
        _dtypes.bfloat16_bits_to_float32(total) + _dtypes.bfloat16_bits_to_float32(addend)
    )


_sixteen_bit_sums = {}  # dtype name -> MPI.Op, created on first use (needs MPI initialized)


def _sum_op(world, dtype_name: str):
    MPI = world.MPI
    if dtype_name == "bool":
        return MPI.LOR  # numpy's sum of bools: True when any is
    if dtype_name in ("float16", "bfloat16"):
        if dtype_name not in _sixteen_bit_sums:
            function = _add_float16 if dtype_name == "float16" else _add_bfloat16
            _sixteen_bit_sums[dtype_name] = MPI.Op.Create(function, commute=True)
        return _sixteen_bit_sums[dtype_name]
    return MPI.SUM


def _divide_in_place(tensor: Tensor, divisor: int) -> None:
    """tensor /= divisor, each element rounded once to the tensor's dtype."""
    if tensor.dtype.name == "bfloat16":
        bits = raw_bytes(tensor).view(np.uint16)
        bits[...] = _dtypes.float32_to_bfloat16_bits(_dtypes.bfloat16_bits_to_float32(bits) / np.float32(divisor))
    else:
        view = values_view(tensor)
        view /= view.dtype.type(divisor)


def start_all_reduce_sum(array: np.ndarray):
    """Starts summing a float32 numpy array in place across the ranks; returns
    the MPI request (for DDP's buckets, which wait for it later)."""
    world = _require_init("all_reduce")
    return world.comm.Iallreduce(world.MPI.IN_PLACE, [array, world.MPI.FLOAT], op=world.MPI.SUM)


def start_broadcast(tensor: Tensor, src: int):
    """Starts broadcasting ``tensor`` from rank ``src``; returns the MPI request."""
    world = _require_init("broadcast")
    view, datatype = _typed_view(world, tensor)
    return world.comm.Ibcast([view, datatype], root=src)


def start_send(tensor: Tensor, dest: int):
    """Starts sending ``tensor``'s memory to rank ``dest``; returns the MPI
    request. Messages between two ranks arrive in the order sent."""
    world = _require_init("send")
    view, datatype = _typed_view(world, tensor)
    return world.comm.Isend([view, datatype], dest=dest)


def start_receive(tensor: Tensor, source: int):
    """Starts receiving rank ``source``'s next message into ``tensor``; returns the MPI request."""
    world = _require_init("receive")
    view, datatype = _typed_view(world, tensor)
    return world.comm.Irecv([view, datatype], source=source)


def gather_object(value, root: int = 0):
    """Every rank's ``value`` (anything pickle takes: small metadata, not
    tensor data) as a list in rank order on rank ``root``; None elsewhere."""
    world = _require_init("gather_object")
    if world.comm is None:
        return [value]
    payload = np.frombuffer(pickle.dumps(value), np.uint8)
    length, lengths = np.array([payload.size], np.int64), np.zeros(world.size, np.int64)
    wait([world.comm.Igather([length, world.MPI.INT64_T], [lengths, world.MPI.INT64_T], root)], "gather_object (sizes)")
    if world.rank != root:
        wait([world.comm.Igatherv([payload, world.MPI.BYTE], None, root)], "gather_object")
        return None
    received = np.empty(int(lengths.sum()), np.uint8)
    wait(
        [world.comm.Igatherv([payload, world.MPI.BYTE], [received, (lengths, None), world.MPI.BYTE], root)],
        "gather_object",
    )
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    return [pickle.loads(received[start:end].tobytes()) for start, end in zip(bounds[:-1], bounds[1:])]


def all_reduce(tensor: Tensor, op: str = "sum") -> None:
    """Replaces ``tensor`` on every rank, in place, with the elementwise sum
    (``op="sum"``) or mean (``op="mean"``, floating-point tensors only) of
    its values on all ranks. Every dtype; a bool sum is a logical or.
    Summation order is MPI's; every rank gets the same result."""
    name = "all_reduce"
    world = _require_init(name)
    _check_tensor(name, "tensor", tensor, in_place=True)
    if op not in _REDUCE_OPS:
        raise ValueError(f"{name}: argument 'op' expected one of {', '.join(_REDUCE_OPS)}, got {op!r}")
    if op == "mean" and not tensor.dtype.is_floating_point:
        raise TypeError(f"{name}: op 'mean' needs a floating-point tensor, got {tensor.dtype}")
    if world.comm is None:
        return
    view, datatype = _typed_view(world, tensor)
    request = world.comm.Iallreduce(world.MPI.IN_PLACE, [view, datatype], op=_sum_op(world, tensor.dtype.name))
    wait([request], f"all_reduce of {tensor.numel()} {tensor.dtype} elements")
    if op == "mean" and world.size > 1:
        _divide_in_place(tensor, world.size)


def broadcast(tensor: Tensor, src: int = 0) -> None:
    """Overwrites ``tensor`` on every rank, in place, with rank ``src``'s
    values (same shape and dtype on every rank)."""
    name = "broadcast"
    world = _require_init(name)
    _check_tensor(name, "tensor", tensor, in_place=True)
    if isinstance(src, bool) or not isinstance(src, (int, np.integer)) or not 0 <= src < world.size:
        raise ValueError(f"{name}: argument 'src' expected a rank in [0, {world.size}), got {src!r}")
    if world.comm is None:
        return
    view, datatype = _typed_view(world, tensor)
    request = world.comm.Ibcast([view, datatype], root=int(src))
    wait([request], f"broadcast of {tensor.numel()} {tensor.dtype} elements from rank {src}")


def all_gather(tensor: Tensor, out: Tensor | None = None) -> Tensor:
    """Every rank's ``tensor``, stacked in rank order: a tensor of shape
    ``[world_size, *tensor.shape]`` (written into ``out`` when given, which
    must have that shape and the dtype), the same on every rank. MPI writes
    straight into it."""
    name = "all_gather"
    world = _require_init(name)
    _check_tensor(name, "tensor", tensor, in_place=False)
    shape = (world.size, *tensor.shape)
    if out is None:
        out = empty(*shape, dtype=tensor.dtype)
    else:
        _check_tensor(name, "out", out, in_place=True)
        if tuple(out.shape) != shape or out.dtype != tensor.dtype:
            raise ValueError(
                f"{name}: argument 'out' expected a {tensor.dtype} tensor of shape {list(shape)}, "
                f"got a {out.dtype} one of shape {list(out.shape)}"
            )
    if world.comm is None:
        raw_bytes(out)[...] = raw_bytes(tensor)
        return out
    send, datatype = _typed_view(world, tensor)
    receive, _ = _typed_view(world, out)
    request = world.comm.Iallgather([send, datatype], [receive, datatype])
    wait([request], f"all_gather of {tensor.numel()} {tensor.dtype} elements")
    return out


def barrier() -> None:
    """Returns once every rank has called it."""
    world = _require_init("barrier")
    if world.comm is not None:
        wait([world.comm.Ibarrier()], "barrier")


__all__ = ["all_reduce", "broadcast", "all_gather", "barrier"]
