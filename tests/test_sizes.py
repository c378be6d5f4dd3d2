"""Sizes and memory: element and byte counts that would overflow, requests
beyond any machine, and allocations the system refuses. Each must raise an
exception that says what was asked for, never crash, hang or hand back a
short block (the size arithmetic lives in csrc/core/array.cpp)."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

import attnkit
import attnkit.nn as nn

# What more than 2^63 - 1 bytes (one array's limit) looks like in a message.
BEYOND_ONE_ARRAY = r"more than one array can span \(2\^63 - 1 bytes\)"


@pytest.mark.parametrize(
    "make, asked, bytes_",
    [
        (lambda: attnkit.zeros(2**62), r"float32\[4611686018427387904\]", 2**64),
        (lambda: attnkit.ones(2**62), r"float32\[4611686018427387904\]", 2**64),
        (lambda: attnkit.empty(2**62), r"float32\[4611686018427387904\]", 2**64),
        (lambda: attnkit.full((2**62,), 1.5), r"float32\[4611686018427387904\]", 2**64),
        (lambda: attnkit.arange(2**62), r"int64\[4611686018427387904\]", 2**65),
        (lambda: attnkit.zeros(2**32, 2**30), r"float32\[4294967296, 1073741824\]", 2**64),
        (lambda: attnkit.zeros(2**32, 2**32), r"float32\[4294967296, 4294967296\]", 2**66),
        (lambda: attnkit.zeros(1).expand(2**62), r"float32\[4611686018427387904\]", 2**64),
        (lambda: nn.Embedding(2**62, 1), r"float32\[4611686018427387904, 1\]", 2**64),
        (lambda: nn.Linear(2**31, 2**31), r"float32\[2147483648, 2147483648\]", 2**64),
        (lambda: attnkit.empty(2**63 - 1), r"float32\[9223372036854775807\]", 4 * (2**63 - 1)),
        (lambda: attnkit.zeros(2**63 - 1, dtype=attnkit.bool_), r"bool\[9223372036854775807\]", None),
    ],
)
def test_sizes_beyond_one_array_raise_memory_error(make, asked, bytes_):
    """The element count times the item size used to wrap around: a small
    block was allocated and written far past (a segfault), or the allocator's
    size classes overflowed and looped forever (2^63 - 1)."""
    with pytest.raises(MemoryError, match=f"cannot allocate {asked} on cpu: ") as error:
        make()
    if bytes_ is not None:
        assert f": {bytes_} bytes (" in str(error.value)
        assert re.search(BEYOND_ONE_ARRAY, str(error.value))


def test_huge_requests_fail_fast_in_a_fresh_process():
    """2^63 - 1 bytes is exactly one array's limit: the allocator's rounding
    to a size class must not overflow (it used to hang at 100% CPU)."""
    code = (
        "import attnkit\n"
        "try:\n"
        "    attnkit.empty(2**63 - 1, dtype=attnkit.bool_)\n"
        "except MemoryError as e:\n"
        "    print(e)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "cannot allocate bool[9223372036854775807] on cpu: 9223372036854775807 bytes" in result.stdout


@pytest.mark.parametrize(
    "make, asked, bytes_",
    [
        (lambda: attnkit.zeros(2**40), "float32[1099511627776]", "4398046511104 bytes (4.0 TiB)"),
        (
            lambda: attnkit.empty(2**45, dtype=attnkit.int64),
            "int64[35184372088832]",
            "281474976710656 bytes (256.0 TiB)",
        ),
    ],
)
def test_allocations_the_system_refuses_say_what_was_asked(make, asked, bytes_):
    """No bare "MemoryError: std::bad_alloc": the array and the byte count."""
    with pytest.raises(MemoryError) as error:
        make()
    assert str(error.value) == f"cannot allocate {asked} on cpu: {bytes_}, more than the system could give"


@pytest.mark.parametrize("size", [2**63, 2**64, 2**100])
def test_sizes_beyond_int64_are_refused_by_name(size):
    """Not pybind11's "incompatible function arguments"."""
    for make in (attnkit.zeros, attnkit.ones, attnkit.empty):
        with pytest.raises(ValueError, match=r"argument 'size' expected sizes in \[0, 2\*\*63\)"):
            make(size)
        with pytest.raises(ValueError, match=r"argument 'size' expected sizes in \[0, 2\*\*63\)"):
            make(2, size)
    with pytest.raises(ValueError, match=r"full: argument 'size'"):
        attnkit.full((size,), 1.0)
    with pytest.raises(ValueError, match=r"reshape: argument 'shape' expected sizes below 2\*\*63"):
        attnkit.zeros(4).reshape(size, -1)
    with pytest.raises(ValueError, match=r"expand: argument 'shape' expected sizes below 2\*\*63"):
        attnkit.zeros(1).expand(size)
    with pytest.raises(ValueError, match=r"arange: the range has \d+ values"):
        attnkit.arange(size)


def test_zero_element_shapes_are_valid_however_large_the_other_sizes():
    t = attnkit.zeros(2**31, 2**40, 0)
    assert t.shape == (2**31, 2**40, 0) and t.numel() == 0 and t.nbytes == 0
    assert repr(t) == "tensor([], size=(2147483648, 1099511627776, 0), dtype=attnkit.float32)"
    assert attnkit.empty(0, 2**62).nbytes == 0
    assert attnkit.ones(2**62, 0, dtype=attnkit.int64).shape == (2**62, 0)
    assert attnkit.ones(2**20, 0, dtype=attnkit.int64).numpy().shape == (2**20, 0)
    assert attnkit.arange(2**62, 2**62).shape == (0,)
    # numpy has its own limit on the other sizes: its error, not a crash
    with pytest.raises(ValueError, match="array is too big"):
        t.numpy()


@pytest.mark.parametrize("dtype", [attnkit.float32, attnkit.float16, attnkit.int64, attnkit.bool_])
def test_nbytes_is_the_element_count_times_the_item_size(dtype):
    t = attnkit.empty(3, 1000, dtype=dtype)
    assert t.nbytes == 3000 * dtype.itemsize == t.numpy().nbytes


def test_a_failed_allocation_leaves_the_allocator_usable():
    with pytest.raises(MemoryError):
        attnkit.zeros(2**40)
    np.testing.assert_array_equal(attnkit.ones(5).numpy(), np.ones(5, np.float32))
