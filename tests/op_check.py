"""check_op: an op's forward and backward against its float64 reference, with
the tolerance of conftest.py. The op tests call it under the ``cpu_isa``
fixture, so every kernel family the machine has is checked.

An op is checked on float32 inputs and a float32 upstream gradient:
1. the output's shape and dtype, then each gradient's;
2. the forward, then the backward, each within NAIVE_ERROR_FACTOR times the
   error of the naive float32 computation of the same quantity (the
   reference evaluated on the float32 values), where the reference is
   finite; where it is infinite or NaN, the op must give the same, exactly.

A result whose every element comes from a few inputs (an activation, a
rotation, an elementwise product) is held to the tighter elementwise bound
instead: ELEMENTWISE_RTOL of a scale, |expected| unless the test states the
magnitude the result's unavoidable error is relative to (``scales``).
"""

from __future__ import annotations

import numpy as np
from conftest import assert_elementwise_close, assert_reduction_close

import attnkit


def _argument(value):
    """A float32 array becomes a tensor that requires grad; another array
    (ids, masks) a plain tensor; anything else (None, a number) stays."""
    if not isinstance(value, np.ndarray):
        return value
    # from_numpy keeps a 0-d array 0-d; the copy keeps the caller's array ours to read
    tensor = attnkit.from_numpy(np.array(value))
    return tensor.requires_grad_() if value.dtype == np.float32 else tensor


def run_op(op, arguments, upstream, **options):
    """``op(*arguments, **options)`` with tensors made by ``_argument``, then
    backward with ``upstream``: (output, one gradient or None per argument)."""
    tensors = [_argument(value) for value in arguments]
    output = op(*tensors, **options)
    output.backward(attnkit.from_numpy(np.array(upstream, np.float32).reshape(output.shape)))
    gradients = [
        t.grad.numpy().copy() if isinstance(t, attnkit.Tensor) and t.grad is not None else None for t in tensors
    ]
    return output.detach().numpy().copy(), gradients


def assert_matches_reference(actual, expected, naive, what: str) -> None:
    """``actual`` (float32) against ``expected`` (float64): the same shape,
    the same non-finite values where the reference has them, and within the
    naive computation's error bound elsewhere."""
    actual = np.asarray(actual)
    _assert_float32_of_shape(actual, np.shape(expected), what)
    expected, naive = np.asarray(expected, np.float64), np.asarray(naive, np.float64)
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(actual[~finite], expected[~finite], err_msg=f"{what}: non-finite values")
    assert_reduction_close(actual[finite], expected[finite], naive[finite])


# In ``scales``: this result is checked against the naive computation's error.
AGAINST_NAIVE = "against the naive computation"


def check_op(op, arguments, upstream, reference, *, options=None, naive=None, scales=None):
    """Checks ``op`` on ``arguments`` (float32 arrays are differentiated) for
    the upstream gradient ``upstream``.

    ``reference(*arguments, upstream)`` returns (output, gradient of each
    float32 argument, in order), computed in the dtype of its inputs: on
    float64 values it is the reference, on the float32 values the naive
    computation; ``naive``, when given, is the naive computation instead.

    ``scales``, when given, holds one entry per result (the output, then the
    gradients): None to check that result elementwise relative to
    |expected|, an array to check it elementwise relative to that array, or
    AGAINST_NAIVE. Without ``scales`` every result is checked against the
    naive computation. Returns the op's (output, gradients of the float32
    arguments)."""
    output, gradients = run_op(op, arguments, upstream, **(options or {}))
    differentiated = [g for value, g in zip(arguments, gradients) if _is_float32(value)]
    results = [output, *differentiated]
    wide = [value.astype(np.float64) if _is_float32(value) else value for value in arguments]
    expected = reference(*wide, np.asarray(upstream, np.float64))
    assert len(expected) == len(results), "reference: one output and one gradient per float32 argument"
    scales = [AGAINST_NAIVE] * len(results) if scales is None else list(scales)
    assert len(scales) == len(results), "scales: one per output and gradient"
    plain = None
    if any(scale is AGAINST_NAIVE for scale in scales):
        plain = (naive or reference)(*arguments, np.asarray(upstream, np.float32))
    for index, (actual, wanted, scale) in enumerate(zip(results, expected, scales)):
        what = "output" if index == 0 else f"gradient {index - 1}"
        assert actual is not None, f"no {what}"
        if scale is AGAINST_NAIVE:
            assert_matches_reference(actual, wanted, plain[index], what)
        else:
            _assert_float32_of_shape(actual, np.shape(wanted), what)
            assert_elementwise_close(actual, wanted, scale=scale)
    return output, differentiated


def _is_float32(value) -> bool:
    return isinstance(value, np.ndarray) and value.dtype == np.float32


def _assert_float32_of_shape(actual, shape, what: str) -> None:
    assert actual.dtype == np.float32, f"{what}: dtype {actual.dtype}, expected float32"
    assert actual.shape == shape, f"{what}: shape {actual.shape}, expected {shape}"
