"""Shared test settings: the tolerances by dtype (stated once, here), the
comparison helpers that use them, and fixtures."""

from __future__ import annotations

import os

import numpy as np
import pytest
import reference

import attnkit
from attnkit.training import TrainConfig, train

# Relative error allowed on a well-conditioned result of a short computation
# (an activation, one normalization of a row): 8 units in the last place.
ELEMENTWISE_RTOL = {
    "float32": 8 * 2.0**-24,
    "float16": 8 * 2.0**-11,
    "bfloat16": 8 * 2.0**-8,
}
# Reordered reductions (GEMM, attention, softmax sums) may not be more than
# this many times as far from the float64 result as a naive same-dtype
# computation of the same quantity.
NAIVE_ERROR_FACTOR = 2.0
# A product whose inputs were rounded to bfloat16 (8 significant bits, round
# to nearest: a relative error of at most 2**-8 each, the unit roundoff; e.g.
# 1 + 2**-8 rounds to 1): each term a*b is then off by at most
# (1 + 2**-8)**2 - 1 = 2**-7 + 2**-16 of |a b|, so the
# product is within this fraction of sum |a| |b| of the float64 product of the
# unrounded inputs, plus the float32 summation's error over k terms (at most
# k * 2**-24 of the same sum; the bf16 kernels sum in float32).
BFLOAT16_PRODUCT_RTOL = 2.0**-7 + 2.0**-16


# An op given bfloat16 inputs widens them exactly, computes in float32 and
# rounds each result once to bfloat16 (nearest, ties to even; 8 significant
# bits, so within 2**-8 of the value). The tests feed it bfloat16 values, so
# the float64 reference of those very values is exact, and each result must
# be within
# BFLOAT16_RESULT_RTOL of |reference| plus the float32 computation's error,
# allowed as BFLOAT16_FLOAT32_SLACK of the largest |reference| in its row:
# 256 times under the bfloat16 rounding, far above the float32 kernels' own bounds
# (which their float32 tests hold). That the result is the float32 kernel's,
# rounded once, is checked bit for bit besides.
BFLOAT16_RESULT_RTOL = 2.0**-8
BFLOAT16_FLOAT32_SLACK = 2.0**-16


# A whole model run in bfloat16 (model.to(attnkit.bfloat16)) against the same
# model in float32: every logit within this fraction of the largest |logit|.
# Each op rounds its result to 8 bits (2**-8 relative) and a forward stacks
# some 10 of them per block; measured 0.38% (GPT), 0.46% (Llama), 1.0% (BERT)
# on small random models, the same on every tier.
BFLOAT16_MODEL_LOGITS_RTOL = 0.04
# A trained language model's validation perplexity in low precision (int8
# weights, bfloat16) against float32: issue 15's bound.
PERPLEXITY_RELATIVE_CHANGE = 0.01


def bfloat16_product_bound(abs_a, abs_b):
    """The bound above, elementwise for op(A) @ op(B) given |op(A)| and
    |op(B)| (float64): (BFLOAT16_PRODUCT_RTOL + k * 2**-24) * |A| @ |B|."""
    k = abs_a.shape[-1]
    return (BFLOAT16_PRODUCT_RTOL + k * 2.0**-24) * (abs_a @ abs_b)


# Data-parallel training against one process on the same global batch: from
# the same weights, each step's averaged gradient may differ from the one
# process's by this many units in the last place of the tensor's largest
# gradient (the same sums taken in another order; seen up to 18 for a tiny
# GPT on 2 and 3 ranks, every ISA).
SUMMATION_ORDER_ULPS = 32


# A float64 reference's gradient against central differences of the reference
# itself (step 1e-6: the differences are exact to about 1e-10).
FINITE_DIFFERENCES_RTOL = 1e-7
FINITE_DIFFERENCES_ATOL = 1e-9


def assert_matches_finite_differences(gradient, function, x, upstream):
    """``gradient`` is d sum(upstream * function(x)) / dx, as central
    differences of ``function`` (float64) find it."""
    numeric = reference.gradient_of_weighted_sum(function, x, upstream)
    np.testing.assert_allclose(gradient, numeric, rtol=FINITE_DIFFERENCES_RTOL, atol=FINITE_DIFFERENCES_ATOL)


def assert_elementwise_close(actual, expected, *, dtype="float32", scale=None):
    """|actual - expected| <= rtol(dtype) * scale, elementwise.

    ``expected`` is the float64 reference. ``scale`` defaults to |expected|;
    pass a larger one where the result is ill-conditioned or a difference of
    larger terms (for example, the sum of the terms' magnitudes times the
    condition number), and say why at the call. NaN must be NaN and infinities
    must match exactly.
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"shape {actual.shape} != expected {expected.shape}"
    nan = np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(actual), nan, err_msg="NaN positions differ")
    inf = np.isinf(expected)
    np.testing.assert_array_equal(actual[inf], expected[inf], err_msg="infinities differ")
    finite = ~nan & ~inf
    scale = np.abs(expected) if scale is None else np.broadcast_to(np.asarray(scale, np.float64), expected.shape)
    # The smallest normal float32 as a floor: below it the format itself has
    # only absolute precision.
    bound = ELEMENTWISE_RTOL[dtype] * scale[finite] + np.finfo(np.float32).tiny
    error = np.abs(actual[finite] - expected[finite])
    bad = error > bound
    if bad.any():
        i = np.flatnonzero(bad)[0]
        raise AssertionError(
            f"{bad.sum()} of {bad.size} elements beyond tolerance; first at flat index {i}: "
            f"actual {actual[finite][i]!r}, expected {expected[finite][i]!r}, "
            f"error {error[i]:.3g} > bound {bound[i]:.3g}"
        )


def assert_reduction_close(actual, expected, naive, *, factor=NAIVE_ERROR_FACTOR):
    """max|actual - expected| <= factor * max|naive - expected| (+ 1 ulp of the
    largest |expected|, so a naive result that happens to be exact does not
    demand exactness). ``expected`` is float64; ``naive`` the same quantity
    computed plainly in the tested dtype."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    naive = np.asarray(naive, dtype=np.float64)
    assert actual.shape == expected.shape, f"shape {actual.shape} != expected {expected.shape}"
    if expected.size == 0:
        return
    ours = np.max(np.abs(actual - expected))
    theirs = np.max(np.abs(naive - expected))
    ulp = np.spacing(np.float32(np.max(np.abs(expected))))
    assert ours <= factor * theirs + ulp, (
        f"max error {ours:.3g} exceeds {factor} x the naive computation's {theirs:.3g} (+ulp {ulp:.3g})"
    )


def _isas_under_test():
    forced = os.environ.get("ATTNKIT_CPU_ISA", "").strip().lower()
    if forced and forced != "auto":
        return [forced]  # the run forced one ISA: test that one only
    return attnkit.supported_cpu_isas()


# The VNNI and bf16 tiers (avx512_vnni, avx512_bf16, amx) compile the float32 kernels from avx512's
# Vec: the same source and vocabulary. A float32 test runs under each Vec's
# own tier and the best tier (which runs by default); the bf16 tests run under
# every tier (bf16_isa).
_FLOAT32_SAME_AS_AVX512 = ("avx512_vnni", "avx512_bf16", "amx")


def _float32_isas_under_test():
    isas = _isas_under_test()
    best = isas[-1]
    return [isa for isa in isas if isa not in _FLOAT32_SAME_AS_AVX512 or isa == best]


def _select(isa):
    previous = attnkit.cpu_isa()
    attnkit._C.select_cpu_isa(isa)
    return previous


@pytest.fixture(params=_float32_isas_under_test())
def cpu_isa(request):
    """Runs the test once under each CPU kernel family this machine has
    (each Vec's tier and the best; see above)."""
    previous = _select(request.param)
    yield request.param
    attnkit._C.select_cpu_isa(previous)


@pytest.fixture(params=_isas_under_test())
def bf16_isa(request):
    """Runs the test once under every CPU tier this machine has, the bf16
    ones included."""
    previous = _select(request.param)
    yield request.param
    attnkit._C.select_cpu_isa(previous)


@pytest.fixture
def threads():
    """Yields attnkit.set_num_threads, for a test that runs at a thread count of
    its choice; restores the count afterwards."""
    previous = attnkit.get_num_threads()
    yield attnkit.set_num_threads
    attnkit.set_num_threads(previous)


def assert_same_bits_at_thread_counts(compute, counts=(1, 2, 3)):
    """``compute()`` (an array, a number, or a tuple or list of them) gives
    the same bits at each thread count in ``counts``: a kernel's summation
    order must not depend on how its work is split. The count is restored
    afterwards."""
    previous = attnkit.get_num_threads()
    results = []
    try:
        for count in counts:
            attnkit.set_num_threads(count)
            result = compute()
            parts = result if isinstance(result, (tuple, list)) else [result]
            results.append([np.array(part) for part in parts])  # copies: the next run may reuse memory
    finally:
        attnkit.set_num_threads(previous)
    first = results[0]
    for count, other in zip(counts[1:], results[1:]):
        assert len(other) == len(first), f"{len(other)} results at {count} threads, {len(first)} at {counts[0]}"
        for index, (a, b) in enumerate(zip(first, other)):
            assert a.dtype == b.dtype and a.shape == b.shape, f"result {index}: {b.dtype}{b.shape} at {count} threads"
            assert a.tobytes() == b.tobytes(), f"result {index}: other bits at {count} threads than at {counts[0]}"


@pytest.fixture
def keep_default_generator():
    """Restores the default generator's state after a test that seeds it, so
    tests that draw from it unseeded do not depend on which ran before."""
    state = attnkit.random.default_generator.state_dict()
    yield
    attnkit.random.default_generator.load_state_dict(state)


@pytest.fixture
def rng():
    return np.random.default_rng(20261124)


# Models loaded from Hugging Face checkpoints against transformers, both in
# float32 (the acceptance bound of issue 13): every logit within this
# fraction of the largest logit magnitude of the compared tensor.
PRETRAINED_LOGITS_RTOL = 1e-5


def assert_logits_close(actual, expected, *, rtol=PRETRAINED_LOGITS_RTOL):
    """max |actual - expected| <= rtol * max |expected|, over the whole
    tensor (logits near zero have no meaningful relative error of their own)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"shape {actual.shape} != expected {expected.shape}"
    assert np.isfinite(actual).all(), "non-finite values"
    scale = np.max(np.abs(expected))
    error = np.max(np.abs(actual - expected))
    assert error <= rtol * scale, f"max error {error:.3g} > {rtol} x max |expected| {scale:.3g}"


@pytest.fixture(scope="session")
def shakespeare_run(tmp_path_factory):
    """(run directory, TrainConfig) of a small character-level GPT trained
    on tiny Shakespeare (2 layers, 96 wide, 400 steps: a few seconds), for
    the low-precision accuracy tests to compare against; trained once."""
    out = tmp_path_factory.mktemp("shakespeare_run")
    config = TrainConfig(
        n_layer=2,
        n_head=4,
        n_embd=96,
        block_size=64,
        batch_size=16,
        max_iters=400,
        lr=2e-3,
        warmup_iters=20,
        eval_interval=400,
        eval_iters=2,
        out=str(out),
        progress=False,
    )
    train(config)
    return out, config
