"""attnkit.Tensor: numpy and DLPack round trips (zero-copy where promised),
every dtype, empty and 0-d tensors, bad input, and the autograd basics."""

from __future__ import annotations

import gc
import warnings

import numpy as np
import pytest

import attnkit
import attnkit.nn.functional as F
from attnkit import _C
from attnkit.autograd import Function

NUMPY_DTYPES = {
    "float32": np.float32,
    "float16": np.float16,
    "int32": np.int32,
    "int64": np.int64,
    "bool": np.bool_,
}
ALL_DTYPES = ["float32", "float16", "bfloat16", "int32", "int64", "bool"]


def sample(shape, dtype_name, rng):
    """Random values representable exactly in dtype_name (bfloat16: 8 bits)."""
    if dtype_name == "bool":
        return rng.random(shape) < 0.5
    if dtype_name in ("int32", "int64"):
        return rng.integers(-1000, 1000, size=shape).astype(NUMPY_DTYPES[dtype_name])
    values = rng.integers(-128, 128, size=shape) / 16.0  # 8 significant bits at most
    return values.astype(np.float32 if dtype_name == "bfloat16" else NUMPY_DTYPES[dtype_name])


def shares_memory(tensor, array):
    return np.shares_memory(np.asarray(tensor), array)


# ----------------------------------------------------------------- numpy --


def test_from_numpy_shares_memory_both_ways():
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = attnkit.from_numpy(array)
    assert t.shape == (2, 3) and t.dtype == attnkit.float32
    array[0, 1] = 42.0  # written through numpy, seen in the tensor
    assert t.numpy()[0, 1] == 42.0
    t.numpy()[1, 2] = -7.0  # written through the tensor's view, seen in numpy
    assert array[1, 2] == -7.0
    assert shares_memory(t, array)


def test_numpy_method_is_a_view_of_the_tensor():
    t = attnkit.tensor([[1.0, 2.0], [3.0, 4.0]])
    view = t.numpy()
    assert view.dtype == np.float32 and view.shape == (2, 2)
    view[0, 0] = 9.0
    assert t.numpy()[0, 0] == 9.0
    assert np.shares_memory(view, t.numpy())


def test_tensor_copies():
    array = np.arange(4, dtype=np.float32)
    t = attnkit.tensor(array)
    array[0] = 100.0
    assert t.numpy()[0] == 0.0
    assert not shares_memory(t, array)
    again = attnkit.tensor(t)  # from a tensor: a copy too
    t.numpy()[1] = -1.0
    assert again.numpy()[1] == 1.0


def test_from_numpy_keeps_the_array_alive():
    array = np.arange(1000, dtype=np.float32)
    t = attnkit.from_numpy(array)
    del array
    gc.collect()
    attnkit.tensor(np.full(1000, -1.0, np.float32))  # would reuse freed memory
    np.testing.assert_array_equal(t.numpy(), np.arange(1000, dtype=np.float32))


@pytest.mark.parametrize("dtype_name", list(NUMPY_DTYPES))
def test_numpy_round_trip_every_numpy_dtype(dtype_name, rng):
    array = sample((3, 5), dtype_name, rng)
    for t in (attnkit.from_numpy(array), attnkit.tensor(array)):
        assert t.dtype == getattr(attnkit, dtype_name) and t.dtype.name == dtype_name
        assert t.shape == (3, 5) and t.numel() == 15
        assert t.nbytes == array.nbytes
        for out in (t.numpy(), np.asarray(t), np.array(t)):
            assert out.dtype == array.dtype
            np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize("dtype_name", ALL_DTYPES)
def test_tensor_with_a_dtype_converts(dtype_name, rng):
    values = sample((7,), dtype_name, rng).astype(np.float64)
    t = attnkit.tensor(values, dtype=dtype_name)
    assert t.dtype.name == dtype_name
    np.testing.assert_array_equal(np.asarray(t).astype(np.float64), values)
    # A Python list gives the same tensor.
    from_list = attnkit.tensor(values.tolist(), dtype=getattr(attnkit, dtype_name))
    np.testing.assert_array_equal(np.asarray(from_list), np.asarray(t))


def test_default_dtypes_follow_pytorch():
    assert attnkit.tensor([1.5, 2.0]).dtype == attnkit.float32  # Python floats
    assert attnkit.tensor(np.zeros(2, np.float64)).dtype == attnkit.float32
    assert attnkit.tensor([1, 2]).dtype == attnkit.int64
    assert attnkit.tensor(np.zeros(2, np.int32)).dtype == attnkit.int32
    assert attnkit.tensor([True, False]).dtype == attnkit.bool
    assert attnkit.tensor(np.zeros(2, np.float16)).dtype == attnkit.float16


# -------------------------------------------------------------- bfloat16 --


def bfloat16_round_reference(values):
    """Nearest bfloat16 (8 significant bits, ties to even) of float64 normal
    numbers, by frexp and np.rint (which rounds half to even)."""
    mantissa, exponent = np.frexp(np.asarray(values, np.float64))
    return np.ldexp(np.rint(mantissa * 2.0**8) / 2.0**8, exponent)


def test_bfloat16_rounds_to_nearest_even(rng):
    ties = [1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), 2**-9 * (1 + 3 * 2**-8)]
    # Just above a tie: must round up. Rounding to float32 first would land on
    # the tie and round to even (down).
    near_ties = [1 + 2**-8 + 2**-30, -(1 + 2**-8 + 2**-30), 1 + 2**-8 - 2**-30]
    random = rng.uniform(-1e4, 1e4, 2000)
    random_float32 = rng.standard_normal(2000).astype(np.float32)
    for values in (np.array(ties + near_ties), random, random_float32):
        t = attnkit.tensor(values, dtype=attnkit.bfloat16)
        assert t.dtype == attnkit.bfloat16 and t.nbytes == 2 * values.size
        np.testing.assert_array_equal(np.asarray(t), bfloat16_round_reference(values))
    exact = np.asarray(attnkit.tensor(ties, dtype=attnkit.bfloat16))
    np.testing.assert_array_equal(exact, [1.0, 1 + 2**-6, -1.0, 2**-9 * (1 + 2**-6)])


def test_bfloat16_special_values():
    values = [np.inf, -np.inf, np.nan, 0.0, -0.0, 1e39, -1e39, 3.3e38, 2.0**-133]
    out = np.asarray(attnkit.tensor(values, dtype=attnkit.bfloat16))
    np.testing.assert_array_equal(out[:2], [np.inf, -np.inf])
    assert np.isnan(out[2])
    assert out[3] == 0.0 and not np.signbit(out[3]) and np.signbit(out[4])
    np.testing.assert_array_equal(out[5:7], [np.inf, -np.inf])  # beyond bfloat16's range
    assert out[7] == bfloat16_round_reference(3.3e38)
    assert out[8] == 2.0**-133  # the smallest subnormal bfloat16


def test_bfloat16_reads_back_widened_and_numpy_raises():
    t = attnkit.tensor([1.0, -2.5, 3.0], dtype=attnkit.bfloat16)
    widened = np.asarray(t)
    assert widened.dtype == np.float32
    np.testing.assert_array_equal(widened, [1.0, -2.5, 3.0])
    with pytest.raises(TypeError, match="bfloat16"):
        t.numpy()
    with pytest.raises(ValueError, match="copy"):
        np.asarray(t, copy=False)  # widening is a copy
    assert t.float().dtype == attnkit.float32
    np.testing.assert_array_equal(t.float().numpy(), widened)
    assert t.tolist() == [1.0, -2.5, 3.0]


# ---------------------------------------------------- empty and 0-d --


@pytest.mark.parametrize("shape", [(0,), (0, 3), (2, 0, 4)])
@pytest.mark.parametrize("dtype_name", ALL_DTYPES)
def test_empty_tensors(shape, dtype_name):
    t = attnkit.tensor(np.zeros(shape, np.float32), dtype=dtype_name)
    assert t.shape == shape and t.numel() == 0 and t.nbytes == 0
    assert np.asarray(t).shape == shape
    assert attnkit.from_dlpack(t).shape == shape
    if dtype_name != "bfloat16":
        assert t.numpy().shape == shape
        assert np.from_dlpack(t).shape == shape
        assert attnkit.from_numpy(np.zeros(shape, NUMPY_DTYPES[dtype_name])).shape == shape


@pytest.mark.parametrize("dtype_name", ALL_DTYPES)
def test_zero_dimensional_tensors(dtype_name):
    t = attnkit.tensor(1, dtype=dtype_name)
    assert t.shape == () and t.ndim == 0 and t.numel() == 1
    assert np.asarray(t).shape == ()
    assert t.item() == 1
    assert attnkit.from_dlpack(t).shape == ()
    with pytest.raises(TypeError):
        len(t)
    if dtype_name != "bfloat16":
        assert np.from_dlpack(t).shape == ()
        scalar = np.array(1, NUMPY_DTYPES[dtype_name])
        assert attnkit.from_numpy(scalar).shape == ()
    assert attnkit.tensor(3.5).shape == () and attnkit.tensor(3.5).item() == 3.5


# ------------------------------------------------------------ bad input --


def test_from_numpy_refuses_non_contiguous_and_tensor_copies_it():
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    for view in (base[:, ::2], base.T, base[:, 1:]):
        with pytest.raises(ValueError, match="from_numpy.*'array'.*contiguous"):
            attnkit.from_numpy(view)
        copied = attnkit.tensor(view)
        np.testing.assert_array_equal(copied.numpy(), view)
        assert not shares_memory(copied, base)
    # Slicing whole leading rows keeps C order: shared.
    assert shares_memory(attnkit.from_numpy(base[1:3]), base)


def test_from_numpy_refuses_read_only_memory():
    read_only = np.frombuffer(b"\0" * 16, dtype=np.float32)
    with pytest.raises(ValueError, match="from_numpy.*'array'.*read-only"):
        attnkit.from_numpy(read_only)
    with pytest.raises(ValueError, match="from_dlpack.*read-only"):
        attnkit.from_dlpack(read_only)
    np.testing.assert_array_equal(attnkit.tensor(read_only).numpy(), np.zeros(4, np.float32))


@pytest.mark.parametrize(
    "array",
    [
        np.zeros(3, np.float64),
        np.zeros(3, np.complex64),
        np.array([object(), object()]),
        np.zeros(3, np.uint8),
        np.array(["a", "b"]),
    ],
)
def test_from_numpy_refuses_dtypes_attnkit_lacks(array):
    with pytest.raises(TypeError, match="from_numpy.*'array'"):
        attnkit.from_numpy(array)


@pytest.mark.parametrize("array", [np.zeros(3, np.complex128), np.array([object(), 1]), np.array(["x"])])
def test_tensor_refuses_non_numbers(array):
    with pytest.raises(TypeError, match="tensor.*'data'"):
        attnkit.tensor(array)
    with pytest.raises(TypeError, match="tensor.*'data'"):
        attnkit.tensor(array, dtype=attnkit.float32)


def test_bad_arguments_to_constructors():
    with pytest.raises(TypeError, match="from_numpy.*'array'.*list"):
        attnkit.from_numpy([1.0, 2.0])
    with pytest.raises(TypeError, match="dtype"):
        attnkit.tensor([1.0], dtype="float64")
    with pytest.raises(TypeError, match="dtype"):
        attnkit.tensor([1.0], dtype=np.complex64)
    with pytest.raises(TypeError, match="from_dlpack.*'obj'"):
        attnkit.from_dlpack(3.0)
    with pytest.raises(TypeError, match="not built directly"):
        attnkit.Tensor()


# ------------------------------------------------------ __array__ (NumPy 2) --


def test_array_protocol_copy_semantics():
    t = attnkit.tensor([1.0, 2.0, 3.0])
    assert shares_memory(t, t.numpy())  # copy=None: no copy needed, none made
    no_copy = np.asarray(t, copy=False)
    assert np.shares_memory(no_copy, t.numpy())
    forced = np.array(t, copy=True)
    assert not np.shares_memory(forced, t.numpy())
    np.testing.assert_array_equal(forced, [1.0, 2.0, 3.0])
    converted = np.asarray(t, dtype=np.float64)
    assert converted.dtype == np.float64 and not np.shares_memory(converted, t.numpy())
    with pytest.raises(ValueError, match="copy"):
        np.asarray(t, dtype=np.float64, copy=False)
    same_dtype = np.asarray(t, dtype=np.float32, copy=False)
    assert np.shares_memory(same_dtype, t.numpy())
    # Called directly, with NumPy 2's keywords.
    assert np.shares_memory(t.__array__(dtype=None, copy=False), t.numpy())
    assert not np.shares_memory(t.__array__(copy=True), t.numpy())


# ---------------------------------------------------------------- DLPack --


class LegacyProducer:
    """A DLPack producer from before DLPack 1.0: __dlpack__ takes no max_version."""

    def __init__(self, tensor):
        self.tensor = tensor

    def __dlpack__(self, stream=None):
        return self.tensor.__dlpack__()

    def __dlpack_device__(self):
        return self.tensor.__dlpack_device__()


# numpy 2.1 asks for versioned (DLPack 1.x) capsules, which say whether the
# memory may be written; before it, numpy's arrays from DLPack are read-only,
# and numpy refuses to export a read-only array.
NUMPY_WRITES_THROUGH_DLPACK = np.lib.NumpyVersion(np.__version__) >= "2.1.0"


def test_dlpack_to_numpy_shares_memory():
    t = attnkit.tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert t.__dlpack_device__() == (1, 0)  # kDLCPU, device 0
    array = np.from_dlpack(t)
    assert array.shape == (2, 3) and array.dtype == np.float32
    if NUMPY_WRITES_THROUGH_DLPACK:
        array[1, 1] = 50.0
    else:
        assert not array.flags.writeable
        t.numpy()[1, 1] = 50.0
    assert t.numpy()[1, 1] == 50.0 and array[1, 1] == 50.0
    # From a legacy capsule numpy cannot know whether writing is allowed, so
    # its array is read-only; it still shows the tensor's memory.
    legacy = np.from_dlpack(LegacyProducer(t))
    t.numpy()[0, 2] = -3.0
    assert legacy[0, 2] == -3.0 and legacy[1, 1] == 50.0


def test_dlpack_from_numpy_shares_memory():
    array = np.arange(6, dtype=np.int64).reshape(3, 2)
    t = attnkit.from_dlpack(array)
    assert t.shape == (3, 2) and t.dtype == attnkit.int64
    array[2, 0] = -9
    assert t.numpy()[2, 0] == -9
    t.numpy()[0, 1] = 77
    assert array[0, 1] == 77


@pytest.mark.parametrize("versioned", [False, True])
def test_dlpack_capsules_legacy_and_versioned(versioned):
    t = attnkit.tensor([1.0, 2.0, 3.0])
    capsule = t.__dlpack__(max_version=(1, 0)) if versioned else t.__dlpack__()
    assert repr(capsule).split('"')[1] == ("dltensor_versioned" if versioned else "dltensor")
    shared = attnkit.from_dlpack(capsule)
    shared.numpy()[0] = 10.0
    assert t.numpy()[0] == 10.0
    with pytest.raises(ValueError, match="consumed"):
        attnkit.from_dlpack(capsule)


def test_dlpack_memory_outlives_the_producer():
    # attnkit -> numpy: the capsule keeps attnkit's storage alive.
    t = attnkit.tensor(np.arange(4096, dtype=np.float32))
    array = np.from_dlpack(t)
    del t
    gc.collect()
    attnkit.tensor(np.full(4096, -1.0, np.float32))  # same size: would reuse a freed block
    np.testing.assert_array_equal(array, np.arange(4096, dtype=np.float32))
    # numpy -> attnkit: the tensor keeps numpy's array alive.
    source = np.arange(4096, dtype=np.float32)
    t = attnkit.from_dlpack(source)
    del source
    gc.collect()
    np.testing.assert_array_equal(t.numpy(), np.arange(4096, dtype=np.float32))
    # attnkit -> attnkit through a bare capsule, the producer dropped first.
    producer = attnkit.tensor(np.arange(4096, dtype=np.float32))
    capsule = producer.__dlpack__(max_version=(1, 0))
    del producer
    consumer = attnkit.from_dlpack(capsule)
    del capsule
    gc.collect()
    np.testing.assert_array_equal(consumer.numpy(), np.arange(4096, dtype=np.float32))


def test_unconsumed_capsules_free_their_tensor():
    attnkit.tensor(np.zeros(1 << 16, np.float32))  # warm the allocator's bookkeeping
    gc.collect()
    before = attnkit.cpu_memory_stats()["allocated_bytes"]
    for versioned in (False, True):
        t = attnkit.tensor(np.zeros(1 << 16, np.float32))
        capsule = t.__dlpack__(max_version=(1, 0) if versioned else None)
        del t, capsule
        gc.collect()
    assert attnkit.cpu_memory_stats()["allocated_bytes"] == before


@pytest.mark.parametrize("dtype_name", ALL_DTYPES)
def test_dlpack_every_dtype(dtype_name, rng):
    values = sample((4, 3), dtype_name, rng)
    t = attnkit.tensor(values, dtype=dtype_name)
    back = attnkit.from_dlpack(t)  # attnkit -> attnkit keeps even bfloat16
    assert back.dtype.name == dtype_name
    np.testing.assert_array_equal(np.asarray(back), np.asarray(t))
    if dtype_name == "bfloat16":
        return  # numpy has no bfloat16 to import into
    as_numpy = np.from_dlpack(t)
    through_numpy = attnkit.from_dlpack(as_numpy if NUMPY_WRITES_THROUGH_DLPACK else as_numpy.copy())
    assert through_numpy.dtype.name == dtype_name
    np.testing.assert_array_equal(through_numpy.numpy(), values)


def test_dlpack_copy_and_device_requests():
    t = attnkit.tensor([1.0, 2.0])
    copied = attnkit.from_dlpack(t.__dlpack__(copy=True))
    copied.numpy()[0] = 5.0
    assert t.numpy()[0] == 1.0
    with pytest.raises(BufferError, match="device"):
        t.__dlpack__(dl_device=(2, 0))


def test_dlpack_refuses_non_contiguous_producers():
    base = np.arange(12, dtype=np.float32).reshape(3, 4)
    with pytest.raises(ValueError, match="from_dlpack.*contiguous"):
        attnkit.from_dlpack(base[:, ::2])
    with pytest.raises(ValueError, match="from_dlpack.*contiguous"):
        attnkit.from_dlpack(base.T)
    assert attnkit.from_dlpack(base[1:]).shape == (2, 4)


@pytest.mark.parametrize("shape", [(0, 6), (6, 0), (0,), (3, 0, 5)])
def test_dlpack_of_empty_arrays(shape):
    """An empty array has no element to place, so any strides describe it
    (numpy gives (0, 6) int64 the strides (48, 8), not row-major for 0 rows)."""
    for dtype in (np.int64, np.float32):
        t = attnkit.from_dlpack(np.zeros(shape, dtype))
        assert t.shape == shape and t.numel() == 0 and t.dtype.numpy_dtype == dtype
        assert np.from_dlpack(t).shape == shape
    strided = np.zeros((6, 4), np.int64)[:0, ::2]
    assert attnkit.from_dlpack(strided).shape == (0, 2)


def test_dlpack_with_pytorch():
    torch = pytest.importorskip("torch")
    t = attnkit.tensor([1.0, -2.0, 3.5], dtype=attnkit.bfloat16)
    as_torch = torch.from_dlpack(t)  # a dtype numpy lacks crosses over intact
    assert as_torch.dtype == torch.bfloat16
    assert as_torch.float().tolist() == [1.0, -2.0, 3.5]
    from_torch = attnkit.from_dlpack(torch.arange(6, dtype=torch.float32).reshape(2, 3))
    assert from_torch.shape == (2, 3)
    np.testing.assert_array_equal(from_torch.numpy(), np.arange(6, dtype=np.float32).reshape(2, 3))
    bf16 = attnkit.from_dlpack(torch.tensor([0.5, 1.5], dtype=torch.bfloat16))
    assert bf16.dtype == attnkit.bfloat16
    np.testing.assert_array_equal(np.asarray(bf16), [0.5, 1.5])


# -------------------------------------------------------------- autograd --


def test_gelu_backward_reaches_the_leaf(rng):
    values = rng.standard_normal(17).astype(np.float32)
    upstream = rng.standard_normal(17).astype(np.float32)
    x = attnkit.tensor(values, requires_grad=True)
    y = F.gelu(x)
    assert y.requires_grad and y.grad_fn is not None and not y.is_leaf
    assert x.is_leaf and x.grad is None
    y.backward(attnkit.tensor(upstream))
    expected = _C.gelu_backward(_C.array_from_numpy(upstream), _C.array_from_numpy(values), "none")
    np.testing.assert_array_equal(x.grad.numpy(), np.asarray(expected))
    assert x.grad.dtype == attnkit.float32 and not x.grad.requires_grad


def _leaf_grad(values, upstream):
    """The gradient one backward call through gelu gives a fresh leaf."""
    leaf = attnkit.tensor(values, requires_grad=True)
    F.gelu(leaf).backward(attnkit.tensor(upstream))
    return leaf.grad.numpy()


def test_gradients_accumulate_over_backward_calls(rng):
    values, first, second = (rng.standard_normal(8).astype(np.float32) for _ in range(3))
    x = attnkit.tensor(values, requires_grad=True)
    F.gelu(x).backward(attnkit.tensor(first))
    F.gelu(x).backward(attnkit.tensor(second))
    np.testing.assert_array_equal(x.grad.numpy(), _leaf_grad(values, first) + _leaf_grad(values, second))


def test_retain_graph_allows_a_second_backward(rng):
    x = attnkit.tensor(rng.standard_normal(5).astype(np.float32), requires_grad=True)
    upstream = attnkit.tensor(rng.standard_normal(5).astype(np.float32))
    y = F.gelu(x, approximate="tanh")
    y.backward(upstream, retain_graph=True)
    once = x.grad.numpy().copy()
    y.backward(upstream)
    np.testing.assert_array_equal(x.grad.numpy(), once + once)
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward(upstream)  # the graph was freed by the call without retain_graph


def test_backward_twice_without_retain_graph_raises():
    x = attnkit.tensor([0.5, -1.0], requires_grad=True)
    y = F.gelu(x)
    y.backward(attnkit.tensor([1.0, 1.0]))
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward(attnkit.tensor([1.0, 1.0]))


def test_no_grad_records_nothing():
    x = attnkit.tensor([0.5, -1.0], requires_grad=True)
    assert attnkit.is_grad_enabled()
    with attnkit.no_grad():
        assert not attnkit.is_grad_enabled()
        y = F.gelu(x)
        with attnkit.enable_grad():
            z = F.gelu(x)
    assert attnkit.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None and y.is_leaf
    assert z.requires_grad and z.grad_fn is not None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward(attnkit.tensor([1.0, 1.0]))
    assert x.grad is None


def test_detach_shares_memory_and_cuts_the_graph():
    x = attnkit.tensor([0.5, -1.0], requires_grad=True)
    y = F.gelu(x)
    d = y.detach()
    assert not d.requires_grad and d.grad_fn is None and d.is_leaf
    assert np.shares_memory(d.numpy(), y.detach().numpy())
    assert F.gelu(d).grad_fn is None
    with pytest.raises(RuntimeError, match="detach"):
        y.numpy()  # a tensor in a graph is read through detach()


def test_requires_grad_only_for_floating_point():
    with pytest.raises(TypeError, match="requires_grad_.*int64"):
        attnkit.tensor([1, 2]).requires_grad_()
    with pytest.raises(TypeError, match="requires_grad_.*int32"):
        attnkit.tensor([1, 2], dtype=attnkit.int32, requires_grad=True)
    with pytest.raises(TypeError, match="bool"):
        attnkit.tensor([True]).requires_grad_(True)
    assert attnkit.tensor([1, 2]).requires_grad_(False).requires_grad is False


@pytest.mark.parametrize("dtype", [attnkit.float16, attnkit.bfloat16])
def test_low_precision_tensors_say_no_op_computes_a_gradient_in_them(dtype):
    """float16 is storage (checkpoints, conversion); bfloat16 runs forward ops
    (inference) but has no gradient: asking either for gradients warns at
    the user's line; an op refuses float16, saying why, and a backward
    through a bfloat16 op is refused."""
    with pytest.warns(UserWarning, match=f"requires_grad_: no attnkit op computes a gradient in {dtype}") as record:
        t = attnkit.tensor([1.0, 2.0], dtype=dtype, requires_grad=True)
    assert t.requires_grad and record[0].filename == __file__
    with pytest.warns(UserWarning, match="no attnkit op computes a gradient"):
        attnkit.zeros(3, dtype=dtype).requires_grad_()
    with pytest.warns(UserWarning, match="no attnkit op computes a gradient"):
        attnkit.ones(2, dtype=dtype, requires_grad=True)
    ops = (lambda: t * 2, lambda: F.gelu(t), lambda: t.sum(), lambda: F.softmax(t))
    if dtype == attnkit.float16:
        refusal = r"expected float32.*got float16 \(no attnkit op computes in float16"
        for op in ops:
            with pytest.raises(TypeError, match=refusal):
                op()
    else:
        for op in ops:
            out = op()
            assert out.dtype == dtype and out.requires_grad
            with pytest.raises(RuntimeError, match="attnkit computes no gradient in bfloat16"):
                out.backward(attnkit.ones(*out.shape, dtype=dtype))
            assert t.grad is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        attnkit.zeros(2, dtype=dtype).requires_grad_(False)  # no warning without gradients
        attnkit.zeros(2, requires_grad=True)


@pytest.mark.parametrize(
    "data, dtype, bad",
    [
        (np.array([2**64 - 1], np.uint64), None, "18446744073709551615 in the uint64 data"),
        (np.array([0, 2**63], np.uint64), attnkit.int64, "9223372036854775808 in the uint64 data"),
        ([2**64 - 1], None, "18446744073709551615 in the uint64 data"),
        (np.array([2**40]), attnkit.int32, "1099511627776 in the int64 data"),
        (np.array([2**32 - 1], np.uint32), attnkit.int32, "4294967295 in the uint32 data"),
        ([1e30], attnkit.int64, "1e+30 in the float64 data"),
        ([2.0**63], attnkit.int64, "9.223372036854776e+18 in the float64 data"),
        ([float("nan")], attnkit.int32, "nan in the float64 data"),
        ([1.0, float("-inf")], attnkit.int64, "-inf in the float64 data"),
    ],
)
def test_integers_that_do_not_fit_are_refused(data, dtype, bad):
    """numpy's conversion would wrap 2**64 - 1 to -1 (and NaN to -2**63) silently."""
    with pytest.raises(ValueError, match=r"tensor: argument 'data' expected values that fit int(32|64), in \[") as e:
        attnkit.tensor(data, dtype=dtype)
    assert str(e.value).endswith(bad)


def test_integers_at_the_limits_are_kept():
    assert attnkit.tensor(np.array([2**63 - 1, 0], np.uint64)).tolist() == [2**63 - 1, 0]
    assert attnkit.tensor([-(2.0**63), 3.9, -2.9], dtype=attnkit.int64).tolist() == [-(2**63), 3, -2]
    assert attnkit.tensor(np.array([-(2**31), 2**31 - 1]), dtype=attnkit.int32).tolist() == [-(2**31), 2**31 - 1]
    assert attnkit.tensor(np.array([2**32 - 1], np.uint32)).dtype == attnkit.int64
    assert attnkit.tensor(np.array([300, 0], np.uint16), dtype=attnkit.bool_).tolist() == [True, False]


def test_backward_argument_checks():
    x = attnkit.tensor([0.5, -1.0], requires_grad=True)
    y = F.gelu(x)
    with pytest.raises(RuntimeError, match="non-scalar"):
        y.backward()
    with pytest.raises(ValueError, match="'gradient'.*shape"):
        y.backward(attnkit.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(TypeError, match="'gradient'.*dtype"):
        y.backward(attnkit.tensor([1.0, 2.0], dtype=attnkit.float16))
    # A scalar output needs no gradient: it defaults to 1.
    s = attnkit.tensor(2.0, requires_grad=True)
    F.gelu(s).backward()
    assert s.grad.shape == ()
    np.testing.assert_array_equal(
        s.grad.numpy(),
        np.asarray(
            _C.gelu_backward(
                _C.array_from_numpy(np.array(1.0, np.float32)), _C.array_from_numpy(np.array(2.0, np.float32)), "none"
            )
        ),
    )


def _native(values):
    return _C.array_from_numpy(np.asarray(values, np.float32), "", True)


class _ScaleAndSquare(Function):
    """Test-only op with two outputs: (2x, x^2)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x._array)
        v = np.asarray(x._array)
        return _native(2 * v), _native(v * v)

    @staticmethod
    def backward(ctx, grad_scaled, grad_squared):
        (x,) = ctx.saved
        return _native(2 * np.asarray(grad_scaled) + 2 * np.asarray(x) * np.asarray(grad_squared))


class _WeightedSum(Function):
    """Test-only op: 3a + 5b, to join two branches into one output."""

    @staticmethod
    def forward(ctx, a, b):
        return _native(3 * np.asarray(a._array) + 5 * np.asarray(b._array))

    @staticmethod
    def backward(ctx, grad):
        g = np.asarray(grad)
        return _native(3 * g), _native(5 * g)


def test_an_op_with_two_outputs_gets_both_gradients():
    values = np.array([1.0, -2.0, 3.0], np.float32)
    x = attnkit.tensor(values, requires_grad=True)
    scaled, squared = _ScaleAndSquare.apply(x)
    assert scaled.grad_fn is squared.grad_fn
    out = _WeightedSum.apply(scaled, squared)  # 6x + 5x^2
    upstream = np.array([1.0, 0.5, -2.0], np.float32)
    out.backward(attnkit.tensor(upstream))
    np.testing.assert_array_equal(x.grad.numpy(), upstream * (6 + 10 * values))


def test_an_unused_output_gets_a_zero_gradient():
    values = np.array([1.0, -2.0, 3.0], np.float32)
    upstream = np.array([1.0, 0.5, -2.0], np.float32)
    x = attnkit.tensor(values, requires_grad=True)
    scaled, _ = _ScaleAndSquare.apply(x)
    scaled.backward(attnkit.tensor(upstream))
    np.testing.assert_array_equal(x.grad.numpy(), 2 * upstream)  # squared's gradient: 0
    x.grad = None
    _, squared = _ScaleAndSquare.apply(x)
    squared.backward(attnkit.tensor(upstream))
    np.testing.assert_array_equal(x.grad.numpy(), 2 * values * upstream)


def test_a_tensor_used_twice_sums_its_gradients():
    values = np.array([0.25, -1.5], np.float32)
    x = attnkit.tensor(values, requires_grad=True)
    out = _WeightedSum.apply(x, x)
    out.backward(attnkit.tensor([1.0, 2.0]))
    np.testing.assert_array_equal(x.grad.numpy(), [8.0, 16.0])
