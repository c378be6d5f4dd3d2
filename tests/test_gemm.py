"""The GEMM: every transpose, odd and degenerate sizes, batches with
broadcasting, the epilogues, alpha/beta, each ISA; then F.matmul and F.linear
with their gradients."""

import os

import numpy as np
import pytest
import reference
from conftest import assert_elementwise_close, assert_reduction_close, assert_same_bits_at_thread_counts
from op_check import check_op

import attnkit
import attnkit.nn.functional as F
from attnkit import _C


def native(x):
    return _C.array_from_numpy(np.ascontiguousarray(x, dtype=np.float32), "", True)


def operands(rng, m, k, n, transpose_a=False, transpose_b=False, batch_a=(), batch_b=()):
    a = rng.standard_normal(batch_a + ((k, m) if transpose_a else (m, k))).astype(np.float32)
    b = rng.standard_normal(batch_b + ((n, k) if transpose_b else (k, n))).astype(np.float32)
    op_a = np.swapaxes(a, -1, -2) if transpose_a else a
    op_b = np.swapaxes(b, -1, -2) if transpose_b else b
    return a, b, op_a, op_b


def check_product(rng, m, k, n, transpose_a=False, transpose_b=False, batch_a=(), batch_b=()):
    a, b, op_a, op_b = operands(rng, m, k, n, transpose_a, transpose_b, batch_a, batch_b)
    out, pre = _C.matmul(native(a), native(b), transpose_a, transpose_b)
    assert pre is None
    assert_reduction_close(np.asarray(out), reference.matmul(op_a, op_b), reference.matmul_naive_float32(op_a, op_b))


@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_every_transpose(cpu_isa, rng, transpose_a, transpose_b):
    check_product(rng, 37, 129, 67, transpose_a, transpose_b)


@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_every_transpose_across_cache_blocks(cpu_isa, rng, transpose_a, transpose_b):
    # K past every ISA's KC and M past MC: the packed blocks start inside the
    # operands, and both packings (runs and in-register transposes) meet
    # partial register tiles and partial vectors at every edge.
    check_product(rng, 301, 777, 139, transpose_a, transpose_b)


@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (1, 300, 200), (70, 1, 50), (1, 1, 77), (55, 1, 1)])
def test_degenerate_shapes(cpu_isa, rng, m, k, n):
    check_product(rng, m, k, n)
    check_product(rng, m, k, n, True, True)


@pytest.mark.parametrize("size", [3, 17, 31, 32, 33, 127, 1000, 1025])
def test_odd_sizes(cpu_isa, rng, size):
    # the odd size in each position in turn, against partners that are odd too
    check_product(rng, size, 45, 19)
    check_product(rng, 13, size, 21, transpose_b=True)
    check_product(rng, 23, 9, size, transpose_a=True)


def test_zero_depth_scales_c_and_applies_the_epilogue(cpu_isa, rng):
    c0 = rng.standard_normal((5, 7)).astype(np.float32)
    bias = rng.standard_normal(7).astype(np.float32)
    out = native(c0)
    _C.matmul(native(np.zeros((5, 0))), native(np.zeros((0, 7))), beta=0.5, out=out, bias=native(bias))
    np.testing.assert_array_equal(np.asarray(out), (np.float32(0.5) * c0) + bias)
    fresh, _ = _C.matmul(native(np.zeros((5, 0))), native(np.zeros((0, 7))))
    np.testing.assert_array_equal(np.asarray(fresh), np.zeros((5, 7), np.float32))


def test_large_depth(cpu_isa, rng):
    check_product(rng, 8, 8192, 24)
    check_product(rng, 5, 8192, 3, transpose_a=True)


def test_empty_rows_or_columns(rng):
    out, _ = _C.matmul(native(np.ones((0, 4))), native(np.ones((4, 3))))
    assert out.shape == (0, 3)
    out, _ = _C.matmul(native(np.ones((2, 4))), native(np.ones((4, 0))))
    assert out.shape == (2, 0)


@pytest.mark.parametrize(
    "batch_a, batch_b",
    [
        ((4,), (4,)),  # strided batch
        ((4,), ()),  # B shared by the batch
        ((), (3,)),  # A shared by the batch
        ((2, 1), (1, 3)),  # both broadcast
        ((2, 3), (3,)),
    ],
)
def test_batches_with_broadcast(cpu_isa, rng, batch_a, batch_b):
    check_product(rng, 19, 33, 21, batch_a=batch_a, batch_b=batch_b)
    check_product(rng, 19, 33, 21, True, True, batch_a=batch_a, batch_b=batch_b)


def test_alpha_and_beta(cpu_isa, rng):
    a, b, _, _ = operands(rng, 31, 47, 29)
    c0 = rng.standard_normal((31, 29)).astype(np.float32)
    out = native(c0)
    _C.matmul(native(a), native(b), alpha=-1.5, beta=0.25, out=out)
    expected = -1.5 * reference.matmul(a, b) + 0.25 * c0.astype(np.float64)
    naive = np.float32(-1.5) * reference.matmul_naive_float32(a, b) + np.float32(0.25) * c0
    assert_reduction_close(np.asarray(out), expected, naive)


def test_beta_zero_never_reads_c(cpu_isa, rng):
    a, b, _, _ = operands(rng, 9, 8, 11)
    out = native(np.full((9, 11), np.nan))
    _C.matmul(native(a), native(b), beta=0.0, out=out)
    assert np.isfinite(np.asarray(out)).all()


@pytest.mark.parametrize("activation", ["none", "relu", "gelu", "gelu_tanh"])
def test_bias_and_activation_epilogue(cpu_isa, rng, activation):
    m, k, n = 45, 70, 53
    a, b, _, _ = operands(rng, m, k, n, transpose_b=True)
    bias = rng.standard_normal(n).astype(np.float32)
    out, pre = _C.matmul(
        native(a), native(b), transpose_b=True, bias=native(bias), activation=activation, save_pre_activation=True
    )
    expected_pre = reference.matmul(a, b.T) + bias
    naive_pre = reference.matmul_naive_float32(a, b.T) + bias
    if activation == "none":
        assert pre is None
        assert_reduction_close(np.asarray(out), expected_pre, naive_pre)
        return
    assert_reduction_close(np.asarray(pre), expected_pre, naive_pre)
    assert_activation_of(out, pre, activation)


def assert_activation_of(out, pre, activation):
    """The epilogue's activation is elementwise on the saved pre-activation:
    ``out`` against the float64 activation of ``pre``."""
    pre = np.asarray(pre)
    if activation == "relu":
        expected = np.maximum(pre.astype(np.float64), 0)
    else:
        expected = reference.gelu(pre, "tanh" if activation == "gelu_tanh" else "none")
    # GELU's value is a difference of terms near its minimum at -0.75; scale by |x|.
    assert_elementwise_close(np.asarray(out), expected, scale=np.maximum(np.abs(expected), np.abs(pre)))


@pytest.mark.parametrize("m", [1, 2, 5, 8, 13, 16, 17])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_decode_shapes(cpu_isa, rng, m, transpose_b):
    # few rows of A: the unpacked path that streams B (17 is just past it);
    # K and N with tails at every vector width
    check_product(rng, m, 37, 333, transpose_b=transpose_b)
    check_product(rng, m, 768, 130, transpose_b=transpose_b)
    check_with_epilogue(rng, m, 45, 77, False, transpose_b, activation="gelu_tanh", alpha=0.5, beta=-2.0)


def test_results_do_not_depend_on_the_thread_count(rng):
    a, b, _, _ = operands(rng, 301, 257, 263)
    assert_same_bits_at_thread_counts(lambda: np.asarray(_C.matmul(native(a), native(b))[0]), (1, 2))


# ---- the driver's paths: blocking, threads, tails ------------------------


@pytest.fixture
def forced_blocking():
    """set_gemm_blocking for the test, back to the caches' blocks afterwards."""
    yield lambda mc, kc, nc: _C.set_gemm_blocking(mc, kc, nc)
    _C.set_gemm_blocking(0, 0, 0)


def check_with_epilogue(rng, m, k, n, transpose_a, transpose_b, activation="gelu", alpha=-0.75, beta=0.5):
    """The product with alpha, beta, a bias, an activation and the saved
    pre-activation, against the float64 reference."""
    a, b, op_a, op_b = operands(rng, m, k, n, transpose_a, transpose_b)
    bias = rng.standard_normal(n).astype(np.float32)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    out = native(c0)
    _, pre = _C.matmul(
        native(a),
        native(b),
        transpose_a,
        transpose_b,
        alpha=alpha,
        beta=beta,
        out=out,
        bias=native(bias),
        activation=activation,
        save_pre_activation=True,
    )
    expected_pre = alpha * reference.matmul(op_a, op_b) + beta * c0.astype(np.float64) + bias
    naive_pre = np.float32(alpha) * reference.matmul_naive_float32(op_a, op_b) + np.float32(beta) * c0 + bias
    assert_reduction_close(np.asarray(pre), expected_pre, naive_pre)
    assert_activation_of(out, pre, activation)


def test_config_reports_the_tile_and_blocks(cpu_isa):
    config = _C.gemm_config()
    assert config["overridden"] is False
    mr, nr = config["mr"], config["nr"]
    assert config["mc"] % mr == 0 and config["nc"] % nr == 0 and config["kc"] >= 16
    caches = attnkit.build_info()["cpu_caches"]
    assert caches["l1d_bytes"] >= 4096 and caches["l2_bytes"] >= caches["l1d_bytes"]
    assert caches["source"] in ("cpuid", "sysfs", "default")
    assert (config["mc"], config["kc"], config["nc"]) == _C.gemm_blocking_for(
        caches["l1d_bytes"],
        caches["l2_bytes"] // caches["l2_sharing"],
        caches["l3_bytes"] // caches["l3_sharing"],
        mr,
        nr,
    )


@pytest.mark.parametrize("l1d", [4096, 24 * 1024 + 64, 48 * 1024, 80 * 1024])
@pytest.mark.parametrize("l2", [64 * 1024, 1_250_000, 2 << 20, 5 << 20])
@pytest.mark.parametrize("l3", [0, 3_000_000, 480 << 20])
@pytest.mark.parametrize("mr, nr", [(4, 8), (6, 16), (12, 32), (5, 24)])
def test_blocking_from_odd_cache_sizes(l1d, l2, l3, mr, nr):
    mc, kc, nc = _C.gemm_blocking_for(l1d, l2, l3, mr, nr)
    assert mc % mr == 0 and nc % nr == 0 and mc >= mr and nc >= nr
    assert kc % 16 == 0 and 16 <= kc <= 512
    if kc > 16:  # the A sliver fits half the L1D
        assert mr * kc * 4 <= l1d // 2
    if nc > nr:  # the B panel fits half the L2
        assert kc * nc * 4 <= max(l2, 2 * l1d) // 2


def test_blocking_bad_arguments():
    with pytest.raises(ValueError, match="set_gemm_blocking: argument 'blocking' expected three positive"):
        _C.set_gemm_blocking(8, 0, 64)
    with pytest.raises(ValueError, match="set_gemm_blocking"):
        _C.set_gemm_blocking(-1, 16, 64)
    with pytest.raises(ValueError, match="gemm_blocking_for"):
        _C.gemm_blocking_for(0, 1 << 20, 0, 12, 32)


@pytest.mark.parametrize("caches", [(4096, 8192, 0), (6000, 20000, 70000), (32768, 1 << 20, 32 << 20)])
@pytest.mark.parametrize("thread_count", [1, 2])
def test_products_under_blocks_from_odd_caches(cpu_isa, rng, forced_blocking, threads, caches, thread_count):
    # Blocks from small, odd caches cut every operand into many panels and
    # passes, with partial blocks, slivers and register tiles at every edge;
    # at 2 threads the threads share each B panel's packing.
    config = _C.gemm_config()
    forced_blocking(*_C.gemm_blocking_for(*caches, config["mr"], config["nr"]))
    threads(thread_count)
    for transpose_a in (False, True):
        for transpose_b in (False, True):
            check_product(rng, 203, 301, 157, transpose_a, transpose_b)
    check_with_epilogue(rng, 131, 777, 97, False, True)


@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
@pytest.mark.parametrize("thread_count", [1, 2])
def test_epilogue_across_passes_and_panels(
    cpu_isa, rng, forced_blocking, threads, transpose_a, transpose_b, thread_count
):
    # K in several passes (beta only on the first, the epilogue only on the
    # last), several B panels and A blocks, odd block sizes.
    mr = _C.gemm_config()["mr"]
    forced_blocking(2 * mr + 1, 37, 45)
    threads(thread_count)
    check_with_epilogue(rng, 5 * mr + 3, 150, 211, transpose_a, transpose_b)
    check_with_epilogue(rng, 5 * mr + 3, 150, 211, transpose_a, transpose_b, activation="relu", beta=0.0)


def test_tails_of_every_size_modulo_the_tile(cpu_isa, rng):
    mr, nr = _C.gemm_config()["mr"], _C.gemm_config()["nr"]
    for m in range(17, 17 + mr + 1):  # past the decode path's 16 rows
        check_product(rng, m, 23, nr + 5)
    for n in range(1, nr + 2):
        check_product(rng, 2 * mr + 1, 19, n, transpose_b=True)
    for k in (1, 2, 15, 16, 17):
        check_product(rng, mr + 1, k, nr + 1, transpose_a=True)


@pytest.mark.parametrize("thread_count", [1, 2])
def test_few_rows_split_by_columns(cpu_isa, rng, threads, thread_count):
    # More than the decode path's rows but too few for every thread: the
    # threads split the columns and each packs its own part of B.
    threads(thread_count)
    for transpose_a, transpose_b in ((False, False), (True, True)):
        check_product(rng, 29, 300, 1000, transpose_a, transpose_b)
    check_with_epilogue(rng, 29, 300, 1000, False, True)


@pytest.mark.parametrize("thread_count", [1, 2])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_decode_every_row_count(cpu_isa, rng, threads, thread_count, transpose_b):
    threads(thread_count)
    for m in range(1, 17):  # wide enough for both threads from one row on
        check_product(rng, m, 200, 1261, transpose_b=transpose_b)
    check_with_epilogue(rng, 7, 50, 261, False, transpose_b, activation="relu")
    check_with_epilogue(rng, 16, 33, 130, False, transpose_b)


def test_blocked_results_do_not_depend_on_the_thread_count(rng, forced_blocking):
    # The threads share the packing of B, but each element of C is summed in
    # the same order at any thread count.
    a, b, _, _ = operands(rng, 301, 257, 263)
    forced_blocking(24, 48, 64)
    assert_same_bits_at_thread_counts(lambda: np.asarray(_C.matmul(native(a), native(b))[0]), (1, 2))


def test_bad_arguments():
    f = native(np.ones((3, 4)))
    with pytest.raises(TypeError, match="matmul: argument 'a' expected float32, got int32"):
        _C.matmul(_C.array_from_numpy(np.ones((3, 4), np.int32)), f)
    with pytest.raises(ValueError, match="argument 'b' expected an inner dimension of 4"):
        _C.matmul(f, f)
    with pytest.raises(ValueError, match="argument 'a' expected at least 2 dimensions"):
        _C.matmul(native(np.ones(4)), f)
    with pytest.raises(ValueError, match="argument 'bias' expected shape \\[3\\]"):
        _C.matmul(f, f, transpose_b=True, bias=native(np.ones(4)))
    with pytest.raises(ValueError, match="argument 'beta' expected 0 when no 'out'"):
        _C.matmul(f, f, transpose_b=True, beta=1.0)
    with pytest.raises(ValueError, match="argument 'out' expected shape \\[3, 3\\]"):
        _C.matmul(f, f, transpose_b=True, out=native(np.ones((3, 4))))
    square = native(np.ones((3, 3)))
    with pytest.raises(ValueError, match="argument 'out' expected memory separate"):
        _C.matmul(square, square, out=square, beta=1.0)
    with pytest.raises(ValueError, match="argument 'activation' expected"):
        _C.matmul(f, f, transpose_b=True, activation="swish")
    with pytest.raises(ValueError, match="batch dimensions that broadcast"):
        _C.matmul(native(np.ones((2, 3, 4))), native(np.ones((3, 4, 5))))


def _product_in_child(queue):
    attnkit.set_num_threads(2)
    a = np.ones((300, 200), np.float32)
    out = np.asarray(_C.matmul(native(a), native(a.T.copy()))[0])
    queue.put(bool((out == 200).all()))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_threads_work_after_fork(rng):
    # A forked child has none of the parent's worker threads: the pool starts
    # anew there instead of waiting on workers that do not exist.
    import multiprocessing

    _C.matmul(native(np.ones((300, 200))), native(np.ones((200, 300))))  # the parent's workers are running
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_product_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0, "the child hung or failed"
    assert queue.get(timeout=5) is True


# ---- the differentiable wrappers ---------------------------------------


def test_matmul_matches_numpy_semantics_and_gradients(rng):
    a = rng.standard_normal((3, 1, 6, 5)).astype(np.float32)
    b = rng.standard_normal((2, 5, 4)).astype(np.float32)
    g = rng.standard_normal((3, 2, 6, 4)).astype(np.float32)

    def product_and_gradients(matmul, dtype):
        """C = A B, dA = dC B^T summed over the broadcast dimension, dB = A^T dC
        summed likewise, with ``matmul`` and sums in ``dtype``."""

        def compute(a, b, g):
            bt, at = np.swapaxes(b, -1, -2), np.swapaxes(a, -1, -2)
            da = matmul(g, bt).sum(axis=1, keepdims=True, dtype=dtype)
            return matmul(a, b), da, matmul(at, g).sum(axis=0, dtype=dtype)

        return compute

    expected = product_and_gradients(reference.matmul, np.float64)
    naive = product_and_gradients(reference.matmul_naive_float32, np.float32)
    check_op(F.matmul, [a, b], g, expected, naive=naive)


def test_matmul_vectors(rng):
    v = rng.standard_normal(5).astype(np.float32)
    m = rng.standard_normal((5, 3)).astype(np.float32)
    assert F.matmul(attnkit.tensor(v), attnkit.tensor(m)).shape == (3,)
    assert F.matmul(attnkit.tensor(m.T), attnkit.tensor(v)).shape == (3,)
    assert F.matmul(attnkit.tensor(v), attnkit.tensor(v)).shape == ()


@pytest.mark.parametrize("activation", [None, "relu", "gelu", "gelu_tanh"])
def test_linear_forward_and_backward(cpu_isa, rng, activation):
    x = rng.standard_normal((2, 7, 13)).astype(np.float32)
    w = (rng.standard_normal((11, 13)).astype(np.float32) / np.sqrt(13)).astype(np.float32)
    b = rng.standard_normal(11).astype(np.float32)
    g = rng.standard_normal((2, 7, 11)).astype(np.float32)

    def forward(pre):
        if activation is None:
            return pre
        if activation == "relu":
            return np.maximum(pre, 0)
        return reference.gelu(pre, "tanh" if activation == "gelu_tanh" else "none")

    def slope(pre):  # the activation's derivative; central differences of the float64 reference
        h = 1e-6
        return (forward(pre + h) - forward(pre - h)) / (2 * h) if activation else np.ones_like(pre)

    def expected(x, w, b, g):
        pre = reference.matmul(x, w.T) + b
        dx, dw, db = reference.linear_backward(x, w, g * slope(pre))
        return forward(pre), dx.reshape(x.shape), dw, db

    def naive(x, w, b, g):
        """The plain float32 computation: the pre-activation summed plainly,
        the activation and its slope there, the gradients summed plainly."""
        naive_pre = (reference.matmul_naive_float32(x, w.T) + b).astype(np.float64)
        gp = (g * slope(naive_pre)).astype(np.float32)
        return (
            forward(naive_pre).astype(np.float32),
            reference.matmul_naive_float32(gp, w).reshape(x.shape),
            reference.matmul_naive_float32(gp.reshape(-1, 11).T, x.reshape(-1, 13)),
            np.add.reduce(gp.reshape(-1, 11), axis=0, dtype=np.float32),
        )

    check_op(F.linear, [x, w, b], g, expected, options={"activation": activation}, naive=naive)


def test_linear_reference_by_finite_differences(rng):
    x = rng.standard_normal((3, 4))
    w = rng.standard_normal((2, 4))
    g = rng.standard_normal((3, 2))
    dx, dw, db = reference.linear_backward(x, w, g)
    b = rng.standard_normal(2)
    numeric = reference.central_differences({"x": x, "w": w, "b": b}, lambda: float(np.sum((x @ w.T + b) * g)))
    for name, analytic in (("x", dx), ("w", dw), ("b", db)):
        assert np.max(np.abs(numeric[name] - analytic)) < 1e-6


def test_linear_bad_arguments():
    x = attnkit.tensor(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="argument 'x' expected a last dimension of 4"):
        F.linear(x, attnkit.tensor(np.ones((5, 4), np.float32)))
    with pytest.raises(ValueError, match="argument 'weight' expected 2 dimensions"):
        F.linear(x, attnkit.tensor(np.ones(3, np.float32)))
    with pytest.raises(ValueError, match="argument 'activation'"):
        F.linear(x, attnkit.tensor(np.ones((5, 3), np.float32)), activation="tanh")
    with pytest.raises(TypeError, match="argument 'weight' expected an attnkit.Tensor"):
        F.linear(x, np.ones((5, 3)))
