"""bfloat16 on the CPU: the exact float32 <-> bfloat16 conversions, and the
bf16 GEMM (bf16 A and B, float32 products and sums, float32 or bf16 out) on
every CPU tier this machine has: against float64 at the bound of
conftest.bfloat16_product_bound, against a naive float32 sum of the same
bf16 values, and each tier against the portable one."""

import numpy as np
import pytest
import reference
from conftest import assert_reduction_close, bfloat16_product_bound

import attnkit
from attnkit import _C
from attnkit._dtypes import bfloat16_bits_to_float32, float32_to_bfloat16_bits

# The tiers whose bf16 GEMM widens to float32 and runs the float32 kernels.
WIDENING_TIERS = ("generic", "avx2", "avx512")


def bits_of(t):
    """The bfloat16 bits of a bfloat16 tensor (np.asarray widens exactly)."""
    return (np.asarray(t).view(np.uint32) >> 16).astype(np.uint16)


def from_bits(bits):
    """A bfloat16 array holding exactly these bits (through float32, whose
    narrowing of a value with zero low half is exact; NaN is quieted)."""
    return attnkit.tensor(bfloat16_bits_to_float32(bits)).to(attnkit.bfloat16)


# ----------------------------------------------------------- conversions --


def special_float32_bits(rng):
    """Random bit patterns of every class, and the rounding cases: exact
    halves (ties) with even and odd upper halves, one below and above them."""
    upper = rng.integers(0, 1 << 16, 4096, dtype=np.uint32)
    lower = np.array([0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF], np.uint32)
    patterns = (upper[:, None] << np.uint32(16)) | lower[None, :]
    randoms = rng.integers(0, 1 << 32, 200_000, dtype=np.uint64).astype(np.uint32)
    specials = np.array(
        [0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001, 0x7F800001, 0x7FFFFFFF, 0x00000001, 0x007FFFFF,
         0x00800000, 0x7F7FFFFF, 0x7F7F8000, 0x7F7FFFFF, 0x3F808000, 0x3F818000],
        np.uint32,
    )  # fmt: skip
    return np.concatenate([patterns.ravel(), randoms, specials])


@pytest.mark.usefixtures("bf16_isa")
def test_float32_to_bfloat16_rounds_to_nearest_even_and_keeps_nan(rng):
    bits = special_float32_bits(rng)
    values = bits.view(np.float32)
    converted = bits_of(attnkit.tensor(values).to(attnkit.bfloat16))
    expected = float32_to_bfloat16_bits(values)  # numpy's reading of the rule (_dtypes)
    np.testing.assert_array_equal(converted, expected)
    # The rule itself on hand-picked cases: ties to even, carry into the
    # exponent up to infinity, NaN quiet with its sign and upper payload kept.
    cases = {
        0x3F808000: 0x3F80,  # tie, even upper half: down
        0x3F818000: 0x3F82,  # tie, odd upper half: up
        0x3F808001: 0x3F81,  # above the tie: up
        0x7F7FFFFF: 0x7F80,  # the largest float32 rounds to infinity
        0x00000001: 0x0000,  # the smallest subnormal rounds to zero
        0x00018000: 0x0002,  # subnormals round as any other number (no flush)
        0x7F800001: 0x7FC0,  # a signaling NaN becomes a quiet one
        0xFFC12345: 0xFFC1,
    }
    got = bits_of(attnkit.tensor(np.array(list(cases), np.uint32).view(np.float32)).to(attnkit.bfloat16))
    np.testing.assert_array_equal(got, np.array(list(cases.values()), np.uint16))


@pytest.mark.usefixtures("bf16_isa")
def test_bfloat16_to_float32_is_exact_for_every_value():
    every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    widened = np.asarray(from_bits(every).to(attnkit.float32))
    expected = bfloat16_bits_to_float32(every)
    quiet = np.isnan(expected)
    # Every number comes back exactly (and so does a quiet NaN's payload).
    np.testing.assert_array_equal(widened.view(np.uint32)[~quiet], expected.view(np.uint32)[~quiet])
    assert np.isnan(widened[quiet]).all()
    np.testing.assert_array_equal(
        widened.view(np.uint32)[quiet] | 0x00400000, expected.view(np.uint32)[quiet] | 0x00400000
    )


def test_conversions_keep_shape_and_empty_arrays():
    x = attnkit.tensor(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    y = x.to(attnkit.bfloat16)
    assert y.dtype == attnkit.bfloat16 and y.shape == x.shape
    np.testing.assert_array_equal(np.asarray(y.to(attnkit.float32)), np.asarray(x))
    empty = attnkit.zeros(0, 5).to(attnkit.bfloat16)
    assert empty.shape == (0, 5) and empty.to(attnkit.float32).shape == (0, 5)


# ------------------------------------------------------------------ GEMM --


def bf16_operands(rng, shape_a, shape_b, scale=1.0):
    """float32 data, the bfloat16 arrays rounded from it, and the bf16 values
    as float64 (what the kernel multiplies exactly)."""
    a = (rng.standard_normal(shape_a) * scale).astype(np.float32)
    b = (rng.standard_normal(shape_b) * scale).astype(np.float32)
    a16, b16 = attnkit.tensor(a).to(attnkit.bfloat16), attnkit.tensor(b).to(attnkit.bfloat16)
    return a, b, a16, b16, np.asarray(a16, np.float64), np.asarray(b16, np.float64)


def op(x, transpose):
    return np.swapaxes(x, -1, -2) if transpose else x


def check_bf16_product(rng, m, k, n, transpose_a=False, transpose_b=False, batch_a=(), batch_b=()):
    shape_a = batch_a + ((k, m) if transpose_a else (m, k))
    shape_b = batch_b + ((n, k) if transpose_b else (k, n))
    a, b, a16, b16, a_values, b_values = bf16_operands(rng, shape_a, shape_b)
    out, pre = _C.matmul(a16._array, b16._array, transpose_a, transpose_b, out_dtype="float32")
    assert pre is None
    out = np.asarray(out)
    op_a, op_b = op(a_values, transpose_a), op(b_values, transpose_b)
    # The exact product of the bf16 values, summed in float32: as close as a
    # naive float32 sum of the same values.
    assert_reduction_close(out, reference.matmul(op_a, op_b), reference.matmul_naive_float32(op_a, op_b))
    # And within the bound a bf16 rounding of the float32 inputs implies.
    error = np.abs(out - reference.matmul(op(a, transpose_a), op(b, transpose_b)))
    bound = bfloat16_product_bound(np.abs(op(a, transpose_a)).astype(np.float64), np.abs(op(b, transpose_b)))
    assert (error <= bound).all(), f"max error / bound {np.max(error / bound):.3g}"
    return out


@pytest.mark.usefixtures("bf16_isa")
@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_bf16_every_transpose(rng, transpose_a, transpose_b):
    check_bf16_product(rng, 37, 129, 67, transpose_a, transpose_b)


@pytest.mark.usefixtures("bf16_isa")
@pytest.mark.parametrize(
    "m, k, n", [(1, 1, 1), (3, 17, 5), (1, 64, 33), (16, 31, 16), (33, 32, 65), (64, 1000, 3), (127, 300, 257)]
)
def test_bf16_odd_sizes(rng, m, k, n):
    check_bf16_product(rng, m, k, n, transpose_b=True)


@pytest.mark.usefixtures("bf16_isa")
def test_bf16_large_product_on_threads(rng):
    previous = attnkit.get_num_threads()
    try:
        attnkit.set_num_threads(2)
        check_bf16_product(rng, 300, 700, 200, transpose_b=True)
        check_bf16_product(rng, 20, 700, 600)  # few rows: the threads split the columns
    finally:
        attnkit.set_num_threads(previous)


@pytest.mark.usefixtures("bf16_isa")
def test_bf16_batches_broadcast(rng):
    check_bf16_product(rng, 9, 40, 11, batch_a=(2, 3), batch_b=())
    check_bf16_product(rng, 9, 40, 11, batch_a=(2, 1), batch_b=(3,), transpose_a=True)


def test_bf16_portable_tiers_give_the_float32_gemm_of_the_values(rng):
    """Where the bf16 GEMM widens and runs the float32 kernels, its result is
    the float32 GEMM's on the widened values, bit for bit."""
    a, b, a16, b16, _, _ = bf16_operands(rng, (45, 300), (70, 300))
    previous = attnkit.cpu_isa()
    try:
        for isa in [isa for isa in attnkit.supported_cpu_isas() if isa in WIDENING_TIERS]:
            _C.select_cpu_isa(isa)
            ours = np.asarray(_C.matmul(a16._array, b16._array, transpose_b=True, out_dtype="float32")[0])
            widened = [attnkit.tensor(np.asarray(x))._array for x in (a16, b16)]
            theirs = np.asarray(_C.matmul(widened[0], widened[1], transpose_b=True)[0])
            np.testing.assert_array_equal(ours, theirs, err_msg=isa)
    finally:
        _C.select_cpu_isa(previous)


def test_each_tier_equals_the_portable_tier_within_its_bound(rng):
    a, b, a16, b16, a_values, b_values = bf16_operands(rng, (130, 777), (777, 96))
    results = {}
    previous = attnkit.cpu_isa()
    try:
        for isa in attnkit.supported_cpu_isas():
            _C.select_cpu_isa(isa)
            results[isa] = np.asarray(_C.matmul(a16._array, b16._array, out_dtype="float32")[0]).astype(np.float64)
    finally:
        _C.select_cpu_isa(previous)
    # Each is the exact product of the same bf16 values summed in float32:
    # within k * 2**-24 * |A| @ |B| of it, so two tiers within twice that.
    summation = 777 * 2.0**-24 * (np.abs(a_values) @ np.abs(b_values))
    for isa, out in results.items():
        assert (np.abs(out - results["generic"]) <= 2 * summation).all(), isa


@pytest.mark.usefixtures("bf16_isa")
def test_bf16_epilogues_alpha_beta_and_bf16_out(rng):
    m, k, n = 40, 70, 50
    a, b, a16, b16, a_values, b_values = bf16_operands(rng, (m, k), (n, k))
    bias = rng.standard_normal(n).astype(np.float32)
    bias_array = attnkit.tensor(bias)._array
    exact = reference.matmul(a_values, b_values.T) * 0.5 + bias
    naive = reference.matmul_naive_float32(a_values, b_values.T) * np.float32(0.5) + bias
    out, pre = _C.matmul(
        a16._array, b16._array, transpose_b=True, alpha=0.5, bias=bias_array, activation="gelu",
        save_pre_activation=True, out_dtype="float32",
    )  # fmt: skip
    assert_reduction_close(np.asarray(pre), exact, naive)
    gelu = reference.gelu(np.asarray(pre, np.float64))
    np.testing.assert_allclose(np.asarray(out), gelu, rtol=1e-5, atol=1e-6)
    # beta: C = alpha A B + beta C, into a float32 out.
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    c = attnkit.tensor(c0.copy())
    _C.matmul(a16._array, b16._array, transpose_b=True, alpha=2.0, beta=-1.0, out=c._array, out_dtype="float32")
    assert_reduction_close(
        np.asarray(c), 2 * reference.matmul(a_values, b_values.T) - c0,
        2 * reference.matmul_naive_float32(a_values, b_values.T) - c0,
    )  # fmt: skip
    # A bf16 result is the float32 one rounded once.
    as_float, _ = _C.matmul(a16._array, b16._array, transpose_b=True, bias=bias_array, out_dtype="float32")
    as_bf16, _ = _C.matmul(a16._array, b16._array, transpose_b=True, bias=bias_array)
    assert as_bf16.dtype == "bfloat16"
    np.testing.assert_array_equal(
        bits_of(attnkit.Tensor._wrap(as_bf16)), float32_to_bfloat16_bits(np.asarray(as_float))
    )


@pytest.mark.usefixtures("bf16_isa")
@pytest.mark.parametrize("alpha, beta, with_bias", [(1.0, 0.0, False), (1.0, 0.5, True), (0.5, 1.0, False)])
def test_bf16_epilogue_over_several_passes_of_k(rng, alpha, beta, with_bias):
    """K deeper than one cache block: C is carried between passes (in AMX's
    tiles where the block is whole and the epilogue plain), the epilogue
    applies once, on the last pass; edge blocks take the general path."""
    m, k, n = 70, 2100, 90
    a, b, a16, b16, a_values, b_values = bf16_operands(rng, (m, k), (k, n))
    bias = rng.standard_normal(n).astype(np.float32) if with_bias else np.zeros(n, np.float32)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    c = attnkit.tensor(c0.copy())
    _C.matmul(
        a16._array, b16._array, alpha=alpha, beta=beta, out=c._array, out_dtype="float32",
        bias=attnkit.tensor(bias)._array if with_bias else None,
    )  # fmt: skip
    exact = alpha * reference.matmul(a_values, b_values) + beta * c0 + bias
    naive = alpha * reference.matmul_naive_float32(a_values, b_values) + beta * c0 + bias
    assert_reduction_close(np.asarray(c), exact, naive)


@pytest.mark.usefixtures("bf16_isa")
def test_bf16_nan_and_inf_stay_in_their_rows(rng):
    a = rng.standard_normal((35, 64)).astype(np.float32)
    a[3, 10] = np.nan
    a[20, 5] = np.inf
    b = np.abs(rng.standard_normal((64, 40))).astype(np.float32) + 0.1
    out = np.asarray(
        _C.matmul(
            attnkit.tensor(a).to(attnkit.bfloat16)._array, attnkit.tensor(b).to(attnkit.bfloat16)._array,
            out_dtype="float32",
        )[0]
    )  # fmt: skip
    assert np.isnan(out[3]).all()
    assert np.isposinf(out[20]).all()
    others = np.ones(35, bool)
    others[[3, 20]] = False
    assert np.isfinite(out[others]).all()


def test_bf16_gemm_config_is_the_tiers_own(bf16_isa):
    float32 = _C.gemm_config()
    bf16 = _C.gemm_config("bfloat16")
    if bf16_isa == "amx":
        assert (bf16["mr"], bf16["nr"]) == (32, 32)  # four 16 x 16 tiles of C
    else:  # the float32 tile: widened, or vdpbf16ps on avx512's register tile
        assert (bf16["mr"], bf16["nr"]) == (float32["mr"], float32["nr"])
    assert bf16["mc"] % bf16["mr"] == 0 and bf16["nc"] % bf16["nr"] == 0 and bf16["kc"] >= 16
    with pytest.raises(ValueError, match="gemm_config.*'dtype'"):
        _C.gemm_config("float16")


def test_bf16_matmul_bad_input():
    a16 = attnkit.ones(4, 5).to(attnkit.bfloat16)
    b32 = attnkit.ones(5, 3)
    with pytest.raises(TypeError, match="matmul.*'b'.*bfloat16"):
        _C.matmul(a16._array, b32._array)
    with pytest.raises(TypeError, match="matmul.*out_dtype"):
        _C.matmul(a16._array, a16._array, transpose_b=True, out_dtype="int32")
    out = attnkit.zeros(4, 4).to(attnkit.bfloat16)
    with pytest.raises(ValueError, match="matmul.*beta"):
        _C.matmul(a16._array, a16._array, transpose_b=True, beta=1.0, out=out._array)
    with pytest.raises(ValueError, match="matmul.*'b'"):
        _C.matmul(a16._array, a16._array)  # inner dimensions 5 and 4
