"""Fused attention: forward and backward against a float64 reference (itself
checked by finite differences), every mask, GQA, decode, and the numerics
that must hold."""

import contextlib

import numpy as np
import pytest
import reference
from conftest import assert_reduction_close
from op_check import check_op

import attnkit
import attnkit.nn.functional as F


def random_qkv(rng, batch, tq, tk, heads, kv_heads, d, scale=1.0):
    q = (rng.standard_normal((batch, tq, heads, d)) * scale).astype(np.float32)
    k = (rng.standard_normal((batch, tk, kv_heads, d)) * scale).astype(np.float32)
    v = rng.standard_normal((batch, tk, kv_heads, d)).astype(np.float32)
    return q, k, v


def naive_float32(q, k, v, grad_out, dropout=None, **mask):
    """The same computation in float32, unfused, every product summed plainly
    one term at a time (reference.matmul_naive_float32): the accuracy yardstick.
    Backward recomputes P from the float32 log-sum-exp, as any attention that
    keeps only lse must; delta = rowsum(dO * O) as fused kernels compute it."""
    batch, tq, heads, d = q.shape
    group = heads // k.shape[2]
    mm = reference.matmul_naive_float32

    def heads_first(x):
        return np.ascontiguousarray(np.swapaxes(x, 1, 2), dtype=np.float32)  # [B, H, T, D]

    qh, gh = heads_first(q), heads_first(grad_out)
    kh, vh = heads_first(np.repeat(k, group, axis=2)), heads_first(np.repeat(v, group, axis=2))
    scale = np.float32(1 / np.sqrt(d))
    visible = reference.attention_visibility(batch, tq, k.shape[1], **mask)
    s = np.where(visible, mm(qh, np.swapaxes(kh, -1, -2)) * scale, np.float32(-np.inf))
    row_max = s.max(axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, np.float32(0))
    e = np.where(visible, np.exp(s - row_max), np.float32(0))
    total = np.add.reduce(e, axis=-1, keepdims=True)
    seen = total > 0
    p = np.where(seen, e / np.where(seen, total, 1), 0).astype(np.float32)
    keep = np.float32(1) if dropout is None else dropout.astype(np.float32)
    out = mm(p * keep, vh)
    lse = np.where(seen, row_max + np.log(np.where(seen, total, 1)), np.float32(-np.inf)).astype(np.float32)
    with np.errstate(invalid="ignore"):
        p_backward = np.where(visible & seen, np.exp(s - lse), 0).astype(np.float32)
    dv = mm(np.swapaxes(p_backward * keep, -1, -2), gh)
    dp = mm(gh, np.swapaxes(vh, -1, -2)) * keep
    delta = (gh * out).sum(axis=-1, keepdims=True)
    ds = p_backward * (dp - delta)
    dq = scale * mm(ds, kh)
    dk = scale * mm(np.swapaxes(ds, -1, -2), qh)

    def tokens_first(x):
        return np.swapaxes(x, 1, 2)

    def fold(x):
        return tokens_first(x).reshape(batch, k.shape[1], k.shape[2], group, d).sum(axis=3)

    return tokens_first(out), tokens_first(dq), fold(dk), fold(dv)


def run(q, k, v, grad_out, **options):
    tq, tk, tv = (attnkit.tensor(x, requires_grad=True) for x in (q, k, v))
    out = F.attention(tq, tk, tv, **options)
    out.backward(attnkit.tensor(grad_out))
    return out.detach().numpy(), tq.grad.numpy(), tk.grad.numpy(), tv.grad.numpy()


def check(rng, batch, tq, tk, heads, kv_heads, d, **mask):
    q, k, v = random_qkv(rng, batch, tq, tk, heads, kv_heads, d)
    grad_out = rng.standard_normal(q.shape).astype(np.float32)
    options = dict(mask)
    if "key_lengths" in options:
        options["key_lengths"] = attnkit.tensor(np.asarray(options["key_lengths"], np.int64))
    if "key_padding_mask" in options:
        options["key_padding_mask"] = attnkit.tensor(np.asarray(options["key_padding_mask"], bool))

    def expected(q, k, v, grad_out):
        return reference.attention(q, k, v, **mask), *reference.attention_backward(q, k, v, grad_out, **mask)

    def naive(q, k, v, grad_out):
        return naive_float32(q, k, v, grad_out, **mask)

    check_op(F.attention, [q, k, v], grad_out, expected, options=options, naive=naive)


@pytest.mark.parametrize("t", [1, 17, 64, 127])
@pytest.mark.parametrize("d", [16, 64, 80, 128])
def test_sizes(cpu_isa, rng, t, d):
    check(rng, 2, t, t, 2, 2, d)


@pytest.mark.parametrize("t", [1, 17, 64, 127, 1000])
def test_causal(cpu_isa, rng, t):
    check(rng, 1, t, t, 2, 1, 64, causal=True)


def test_largest_head_dim(cpu_isa, rng):
    check(rng, 1, 70, 70, 2, 1, 256, causal=True)


def test_long_sequence(cpu_isa, rng):
    check(rng, 1, 1000, 1000, 1, 1, 80)


@pytest.mark.parametrize("tq, tk", [(1, 100), (5, 130), (64, 200), (130, 50)])
@pytest.mark.parametrize("causal", [False, True])
def test_cross_attention_and_queries_at_the_end(cpu_isa, rng, tq, tk, causal):
    # Tq != Tk: queries are the last Tq positions; with causal and Tq > Tk the
    # first rows see no key at all. (Batch 4: with Tq = 1 or 5 the outputs are
    # small, and the max error of a few hundred elements is a noisy statistic.)
    check(rng, 4, tq, tk, 2, 2, 32, causal=causal)


@pytest.mark.parametrize("heads, kv_heads", [(4, 2), (4, 1), (6, 3)])
def test_grouped_query_attention(cpu_isa, rng, heads, kv_heads):
    check(rng, 2, 33, 33, heads, kv_heads, 16, causal=True)


def test_grouped_query_equals_repeated_heads(cpu_isa, rng):
    q, k, v = random_qkv(rng, 2, 40, 40, 6, 2, 32)
    grouped = F.attention(attnkit.tensor(q), attnkit.tensor(k), attnkit.tensor(v), causal=True).numpy()
    repeated = F.attention(
        attnkit.tensor(q), attnkit.tensor(np.repeat(k, 3, axis=2)), attnkit.tensor(np.repeat(v, 3, axis=2)), causal=True
    ).numpy()
    np.testing.assert_array_equal(grouped, repeated)


@pytest.mark.parametrize("window", [1, 5, 64, 200])
@pytest.mark.parametrize("causal", [False, True])
def test_sliding_window(cpu_isa, rng, window, causal):
    check(rng, 2, 150, 150, 2, 2, 16, window=window, causal=causal)


def test_window_equals_an_explicit_band_mask(cpu_isa, rng):
    # a window of W on one query row equals padding every key outside the band
    q, k, v = random_qkv(rng, 1, 1, 90, 2, 2, 16)
    w = 7
    band = np.abs((1 - 1 + 90 - 1) - np.arange(90)) >= w
    windowed = F.attention(attnkit.tensor(q), attnkit.tensor(k), attnkit.tensor(v), window=w).numpy()
    masked = F.attention(
        attnkit.tensor(q), attnkit.tensor(k), attnkit.tensor(v), key_padding_mask=attnkit.tensor(band[None])
    ).numpy()
    np.testing.assert_array_equal(windowed, masked)


def test_key_lengths_and_padding_mask(cpu_isa, rng):
    check(rng, 3, 20, 70, 2, 2, 16, key_lengths=[70, 33, 1])
    padding = rng.random((3, 70)) < 0.3
    padding[1, :] = True  # one sequence with every key padded: output 0, not NaN
    check(rng, 3, 20, 70, 2, 2, 16, key_padding_mask=padding, causal=True)


def test_lengths_equal_the_mask_they_describe(cpu_isa, rng):
    q, k, v = random_qkv(rng, 2, 9, 50, 2, 2, 16)
    lengths = np.array([50, 21])
    mask = np.arange(50)[None, :] >= lengths[:, None]
    by_length = F.attention(
        attnkit.tensor(q), attnkit.tensor(k), attnkit.tensor(v), key_lengths=attnkit.tensor(lengths)
    ).numpy()
    by_mask = F.attention(
        attnkit.tensor(q), attnkit.tensor(k), attnkit.tensor(v), key_padding_mask=attnkit.tensor(mask)
    ).numpy()
    np.testing.assert_array_equal(by_length, by_mask)


def test_fully_masked_rows_give_zero_output_and_gradients(cpu_isa, rng):
    q, k, v = random_qkv(rng, 2, 10, 10, 2, 2, 16)
    mask = np.zeros((2, 10), bool)
    mask[0] = True
    out, dq, dk, dv = run(
        q, k, v, rng.standard_normal(q.shape).astype(np.float32), key_padding_mask=attnkit.tensor(mask)
    )
    assert np.all(out[0] == 0) and np.all(dq[0] == 0) and np.all(dk[0] == 0) and np.all(dv[0] == 0)
    assert np.isfinite(out).all() and np.isfinite(dq).all()


@pytest.mark.parametrize("poison", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_in_padded_keys_do_not_leak(cpu_isa, rng, poison):
    q, k, v = random_qkv(rng, 2, 12, 75, 2, 2, 16)
    lengths = np.array([75, 40])
    mask = rng.random((2, 75)) < 0.2
    mask[1, 40:] = True
    k[1, 40:] = poison
    v[1, 40:] = poison
    k[0, mask[0]] = poison
    v[0, mask[0]] = poison
    grad_out = rng.standard_normal(q.shape).astype(np.float32)
    for options in (
        dict(key_padding_mask=attnkit.tensor(mask)),
        dict(key_lengths=attnkit.tensor(lengths), key_padding_mask=attnkit.tensor(mask)),
    ):
        out, dq, dk, dv = run(q, k, v, grad_out, **options)
        assert np.isfinite(out).all() and np.isfinite(dq).all()
        assert np.isfinite(dk[~mask]).all() and np.isfinite(dv[~mask]).all()
        clean = reference.attention(q, k, v, key_padding_mask=mask)
        assert_reduction_close(
            out,
            clean,
            naive_float32(
                q,
                np.where(mask[:, :, None, None], 0, k),
                np.where(mask[:, :, None, None], 0, v),
                grad_out,
                key_padding_mask=mask,
            )[0],
        )


def test_large_logits_are_stable(cpu_isa, rng):
    # scores up to about +-1e4: q and k of size ~ 50 per element over d = 16
    q, k, v = random_qkv(rng, 1, 30, 30, 2, 2, 16, scale=50.0)
    grad_out = rng.standard_normal(q.shape).astype(np.float32)
    ours = run(q, k, v, grad_out, causal=True)
    expected = (reference.attention(q, k, v, causal=True),) + reference.attention_backward(
        q, k, v, grad_out, causal=True
    )
    scores = np.einsum("bihd,bjhd->bhij", q.astype(np.float64), k) / 4
    assert np.abs(scores).max() > 5e3
    for a, e, n in zip(ours, expected, naive_float32(q, k, v, grad_out, causal=True)):
        assert np.isfinite(a).all()
        assert_reduction_close(a, e, n)


@pytest.mark.parametrize(
    "batch, t, heads, kv_heads, d, sigma, causal",
    [
        (2, 160, 4, 2, 64, 6.0, True),
        (2, 160, 4, 4, 32, 5.0, False),
        (1, 200, 4, 1, 16, 4.5, True),
        (1, 130, 2, 2, 128, 8.0, True),
    ],
)
def test_large_logit_accuracy(cpu_isa, batch, t, heads, kv_heads, d, sigma, causal):
    # Scores of magnitude 30-300 (the median |score| is 13-43, the largest
    # 110-320): softmax rows close to one-hot, where every rounding of a score
    # moves an exponential. Forward and all three gradients stay within the
    # project's bound of the plain float32 computation's error.
    rng = np.random.default_rng(100 + d)
    q, k, v = random_qkv(rng, batch, t, t, heads, kv_heads, d, scale=sigma)
    grad_out = rng.standard_normal(q.shape).astype(np.float32)
    scores = np.abs(np.einsum("bihd,bjhd->bhij", q, np.repeat(k, heads // kv_heads, axis=2), dtype=np.float64))
    assert np.median(scores) / np.sqrt(d) > 10 and scores.max() / np.sqrt(d) > 100
    ours = run(q, k, v, grad_out, causal=causal)
    expected = (reference.attention(q, k, v, causal=causal),) + reference.attention_backward(
        q, k, v, grad_out, causal=causal
    )
    for name, a, e, n in zip(
        ("out", "dq", "dk", "dv"), ours, expected, naive_float32(q, k, v, grad_out, causal=causal)
    ):
        assert np.isfinite(a).all(), name
        assert_reduction_close(a, e, n)


# Lengths around the blocks: the query block is 48 on every ISA, the key block
# a multiple of 16 sized from the L1 cache (64-128 keys for these head sizes
# on common caches); 1, a block - 1, a block and a block + 1 of each.
BLOCK_EDGES = [1, 15, 16, 17, 47, 48, 49, 63, 64, 65, 79, 80, 81, 97, 127, 128, 129]


@pytest.mark.parametrize("t", BLOCK_EDGES)
def test_block_edges(cpu_isa, rng, t):
    check(rng, 1, t, t, 2, 1, 32, causal=True)
    check(rng, 1, t, 130 - t, 1, 1, 64)  # Tq and Tk on different edges
    # a few queries and a partial vector of D (batch 16: the max error over
    # a few hundred elements is a noisy statistic, and these sums are short)
    check(rng, 16, 3, t, 4, 2, 24, causal=True)


@pytest.mark.parametrize("t", [49, 97, 145])
@pytest.mark.parametrize(
    "mask",
    [
        dict(causal=True),
        dict(window=17),
        dict(window=49, causal=True),
        dict(window=81),
        dict(key_lengths=[1, 16, 47, 48, 49, 80, 81, 96]),
        dict(key_lengths=[0, 64, 65, 97, 128, 129, 144, 145], causal=True),
        dict(padding="runs"),
        dict(padding="runs", causal=True, window=40),
    ],
    ids=lambda m: "-".join(f"{k}" for k in m),
)
def test_masks_across_blocks(cpu_isa, rng, t, mask):
    # Each mask kind with its edges inside, on and across the block edges:
    # blocks hidden whole, partly masked and fully visible side by side.
    mask = dict(mask)
    batch = 8
    if "key_lengths" in mask:
        mask["key_lengths"] = [min(n, t) for n in mask["key_lengths"]]
    if mask.pop("padding", None):
        # runs of padded keys that start and end on and off the block edges,
        # one whole 16-key run, and one batch entry with every key padded
        padding = np.zeros((batch, t), bool)
        for b in range(batch):
            start = (17 * b) % t
            padding[b, start : start + 16 + b] = True
        padding[3, :] = True
        padding[5, ::3] = True
        mask["key_padding_mask"] = padding
    check(rng, batch, t, t, 2, 1, 16, **mask)


@pytest.mark.parametrize("scale", [1e9, 1e30])
@pytest.mark.parametrize("tq, tk, inference", [(17, 40, False), (2, 700, True)])
def test_large_scales_reach_the_hard_max(cpu_isa, rng, scale, tq, tk, inference):
    """A large scale (a temperature near 0) turns attention into a hard max:
    each query gets the value of its best key. The scores are scale * q.k,
    rounded once, and the max is subtracted from those same rounded scores,
    so the best key gets exp(0) = 1 exactly (while scale * q.k stays within
    float32's range). The tiled path (training) and the decode path."""
    q, k, v = random_qkv(rng, 2, tq, tk, 4, 2, 16)
    scores = np.einsum("bihd,bjhd->bhij", q.astype(np.float64), np.repeat(k, 2, axis=2).astype(np.float64))
    best = scores.argmax(axis=-1)  # [b, h, i]
    values = np.repeat(v, 2, axis=2).transpose(0, 2, 1, 3)  # [b, h, j, d]
    expected = np.take_along_axis(values, best[..., None], axis=2).transpose(0, 2, 1, 3)
    qt = attnkit.tensor(q, requires_grad=not inference)
    with attnkit.no_grad() if inference else contextlib.nullcontext():
        out = F.attention(qt, attnkit.tensor(k), attnkit.tensor(v), scale=scale)
    np.testing.assert_array_equal(out.detach().numpy(), expected)


def test_decode_equals_the_last_row_of_causal_attention(cpu_isa, rng):
    q, k, v = random_qkv(rng, 2, 57, 57, 4, 2, 64)
    full = F.attention(attnkit.tensor(q), attnkit.tensor(k), attnkit.tensor(v), causal=True).numpy()
    last = F.attention(attnkit.tensor(q[:, -1:]), attnkit.tensor(k), attnkit.tensor(v), causal=True).numpy()
    assert_reduction_close(last, full[:, -1:], naive_float32(q[:, -1:], k, v, np.zeros_like(q[:, -1:]), causal=True)[0])


@pytest.mark.parametrize("tq", [1, 2, 4])
@pytest.mark.parametrize("heads, kv_heads", [(4, 4), (8, 2), (4, 1)])
def test_decode_path(cpu_isa, rng, tq, heads, kv_heads):
    # inference only (no gradient): a few queries against a long cache take the
    # decode path; 1100 keys are split across threads (split-KV) and merged
    for tk, mask in (
        (1100, dict(causal=True)),
        (300, dict(causal=True, window=100)),
        (700, dict(key_lengths=[700, 333])),
        (80, {}),
    ):
        q, k, v = random_qkv(rng, 2, tq, tk, heads, kv_heads, 64)
        options = dict(mask)
        if "key_lengths" in options:
            k[1, 333:] = np.nan  # padding is never read
            v[1, 333:] = np.nan
            options["key_lengths"] = attnkit.tensor(np.array(mask["key_lengths"]))
        with attnkit.no_grad():
            out = F.attention(attnkit.tensor(q), attnkit.tensor(k), attnkit.tensor(v), **options).numpy()
        zero_grad = np.zeros(q.shape, np.float32)
        kc = np.where(np.isnan(k), 0, k)
        vc = np.where(np.isnan(v), 0, v)
        assert_reduction_close(
            out, reference.attention(q, kc, vc, **mask), naive_float32(q, kc, vc, zero_grad, **mask)[0]
        )


@pytest.mark.parametrize("causal", [False, True])
def test_dropout(cpu_isa, rng, causal):
    batch, t, heads, kv_heads, d, p = 2, 70, 4, 2, 16, 0.3
    q, k, v = random_qkv(rng, batch, t, t, heads, kv_heads, d)
    grad_out = rng.standard_normal(q.shape).astype(np.float32)
    generator = attnkit.random.Generator(1234)
    seed, offset = generator.seed, generator.offset
    ours = run(q, k, v, grad_out, causal=causal, dropout_p=p, generator=generator)
    multipliers = reference.attention_dropout_multipliers((batch, heads, t, t), p, seed, offset)
    expected = (reference.attention(q, k, v, causal=causal, dropout=multipliers),) + reference.attention_backward(
        q, k, v, grad_out, causal=causal, dropout=multipliers
    )
    naive = naive_float32(q, k, v, grad_out, dropout=multipliers, causal=causal)
    for a, e, n in zip(ours, expected, naive):
        assert_reduction_close(a, e, n)
    # the next call draws a new stream: another mask; the same stream again
    # (a rerun, or another thread count) gives the same bits
    again = run(q, k, v, grad_out, causal=causal, dropout_p=p, generator=generator)
    assert not np.array_equal(again[0], ours[0])
    previous = attnkit.get_num_threads()
    try:
        attnkit.set_num_threads(1)
        rerun = run(q, k, v, grad_out, causal=causal, dropout_p=p, generator=attnkit.random.Generator(1234))
    finally:
        attnkit.set_num_threads(previous)
    for a, b in zip(ours, rerun):
        np.testing.assert_array_equal(a, b)


def test_dropout_bad_probability(rng):
    q, k, v = (attnkit.tensor(x) for x in random_qkv(rng, 1, 4, 4, 1, 1, 8))
    for bad in (-0.1, 1.0, float("nan"), True):
        with pytest.raises(ValueError, match="argument 'dropout_p' expected a probability"):
            F.attention(q, k, v, dropout_p=bad)


@pytest.mark.parametrize(
    "options",
    [dict(causal=True), dict(window=30, dropout_p=0.2), dict(key_lengths=[70, 100, 1], causal=True)],
    ids=["causal", "window-dropout", "lengths"],
)
def test_results_do_not_depend_on_the_thread_count(rng, options):
    q, k, v = random_qkv(rng, 3, 100, 100, 4, 2, 32)
    grad_out = rng.standard_normal(q.shape).astype(np.float32)
    options = dict(options)
    if "key_lengths" in options:
        options["key_lengths"] = attnkit.tensor(np.array(options["key_lengths"]))
    previous = attnkit.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            attnkit.set_num_threads(threads)
            seeded = {"generator": attnkit.random.Generator(7)} if "dropout_p" in options else {}
            results.append(run(q, k, v, grad_out, **options, **seeded))
    finally:
        attnkit.set_num_threads(previous)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_reference_backward_by_finite_differences(rng):
    q, k, v = (rng.standard_normal(s) for s in ((1, 3, 2, 4), (1, 5, 1, 4), (1, 5, 1, 4)))
    g = rng.standard_normal(q.shape)
    mask = dict(causal=True, window=3)
    grads = reference.attention_backward(q, k, v, g, **mask)
    numeric = reference.central_differences(
        {"q": q, "k": k, "v": v}, lambda: np.sum(reference.attention(q, k, v, **mask) * g)
    )
    for name, grad in zip("qkv", grads):
        assert np.max(np.abs(numeric[name] - grad)) < 1e-6


def test_empty_problems(cpu_isa, rng):
    # no batch, no query, no key: shapes come out right, nothing is computed
    for b, tq, tk in ((0, 1, 5), (0, 7, 5), (2, 0, 5), (2, 3, 0)):
        q, k, v = random_qkv(rng, b, tq, tk, 2, 1, 8)
        with attnkit.no_grad():
            out = F.attention(attnkit.tensor(q), attnkit.tensor(k), attnkit.tensor(v), causal=True).numpy()
        assert out.shape == (b, tq, 2, 8) and np.all(out == 0)
        grads = run(q, k, v, np.ones(q.shape, np.float32))
        assert [g.shape for g in grads] == [q.shape, q.shape, k.shape, v.shape]
        assert all(np.all(g == 0) for g in grads)


@pytest.mark.parametrize("inference", [False, True])
def test_nan_in_a_visible_key_is_not_mistaken_for_masking(cpu_isa, rng, inference):
    q, k, v = random_qkv(rng, 1, 3, 9, 2, 2, 8)
    k[0, 0] = np.nan  # key 0 is visible to every query
    tensors = [attnkit.tensor(x) for x in (q, k, v)]
    if inference:
        with attnkit.no_grad():
            out = F.attention(*tensors).numpy()
    else:
        out = F.attention(*(t.requires_grad_() for t in tensors)).detach().numpy()
    assert np.isnan(out).all()


def test_a_window_wider_than_everything_hides_nothing(rng):
    q, k, v = (attnkit.tensor(x) for x in random_qkv(rng, 1, 4, 6, 1, 1, 8))
    np.testing.assert_array_equal(F.attention(q, k, v, window=2**63 - 1).numpy(), F.attention(q, k, v).numpy())


def test_bad_arguments(rng):
    q, k, v = (attnkit.tensor(x) for x in random_qkv(rng, 2, 5, 6, 4, 2, 8))
    with pytest.raises(ValueError, match="argument 'q' expected 4 dimensions"):
        F.attention(attnkit.tensor(np.ones((5, 4, 8), np.float32)), k, v)
    with pytest.raises(TypeError, match="argument 'k' expected float32"):
        F.attention(q, attnkit.tensor(np.ones((2, 6, 2, 8), np.int32)), v)
    with pytest.raises(ValueError, match="argument 'k' expected a number of heads dividing"):
        F.attention(
            q, attnkit.tensor(np.ones((2, 6, 3, 8), np.float32)), attnkit.tensor(np.ones((2, 6, 3, 8), np.float32))
        )
    with pytest.raises(ValueError, match="argument 'v' expected the shape of k"):
        F.attention(q, k, attnkit.tensor(np.ones((2, 7, 2, 8), np.float32)))
    with pytest.raises(ValueError, match="argument 'k' expected shape"):
        F.attention(q, attnkit.tensor(np.ones((2, 6, 2, 4), np.float32)), v)
    with pytest.raises(ValueError, match="argument 'key_padding_mask' expected shape \\[2, 6\\]"):
        F.attention(q, k, v, key_padding_mask=attnkit.tensor(np.zeros((2, 5), bool)))
    with pytest.raises(TypeError, match="argument 'key_padding_mask' expected a bool tensor"):
        F.attention(q, k, v, key_padding_mask=attnkit.tensor(np.zeros((2, 6), np.float32)))
    with pytest.raises(ValueError, match="argument 'key_lengths' expected lengths in \\[0, 6\\]"):
        F.attention(q, k, v, key_lengths=attnkit.tensor(np.array([3, 7])))
    with pytest.raises(ValueError, match="argument 'window' expected a positive int"):
        F.attention(q, k, v, window=0)
    with pytest.raises(ValueError, match="argument 'scale' expected a positive number"):
        F.attention(q, k, v, scale=-1.0)
    with pytest.raises(ValueError, match="argument 'scale' expected a positive number that is finite in float32"):
        F.attention(q, k, v, scale=1e39)
    with pytest.raises(ValueError, match="argument 'q' expected at least one head"):
        F.attention(attnkit.tensor(np.ones((2, 5, 0, 8), np.float32)), k, v)
    with pytest.raises(ValueError, match="argument 'q' expected a head_dim of at least 1"):
        empty = attnkit.tensor(np.ones((2, 5, 4, 0), np.float32))
        F.attention(
            empty, attnkit.tensor(np.ones((2, 6, 2, 0), np.float32)), attnkit.tensor(np.ones((2, 6, 2, 0), np.float32))
        )


# ---- attention_qkv: q, k, v read in place from one fused projection --------


def fused_projection(rng, batch, t, heads, kv_heads, d):
    """qkv [B, T, (H + 2 Hkv) D] and its three slices as separate arrays."""
    qkv = rng.standard_normal((batch, t, (heads + 2 * kv_heads) * d)).astype(np.float32)
    k_start, v_start = heads * d, (heads + kv_heads) * d
    q = np.ascontiguousarray(qkv[..., :k_start]).reshape(batch, t, heads, d)
    k = np.ascontiguousarray(qkv[..., k_start:v_start]).reshape(batch, t, kv_heads, d)
    v = np.ascontiguousarray(qkv[..., v_start:]).reshape(batch, t, kv_heads, d)
    return qkv, q, k, v


def run_qkv(qkv, heads, kv_heads, grad_out, **options):
    tensor = attnkit.tensor(qkv, requires_grad=True)
    out = F.attention_qkv(tensor, heads, kv_heads, **options)
    out.backward(attnkit.tensor(grad_out))
    return out.detach().numpy(), tensor.grad.numpy()


def mask_options(rng, batch, t, kind):
    if kind == "padding":
        return {"key_padding_mask": attnkit.tensor(rng.random((batch, t)) < 0.3)}
    if kind == "lengths":
        return {"key_lengths": attnkit.tensor(rng.integers(0, t + 1, batch).astype(np.int64))}
    if kind == "window":
        return {"window": 5, "scale": 0.3}
    return {}


@pytest.mark.parametrize(
    "batch, t, heads, kv_heads, d",
    [(2, 37, 4, 4, 16), (3, 70, 4, 2, 8), (1, 17, 6, 1, 80), (2, 1, 2, 2, 3), (2, 0, 2, 1, 8)],
)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kind", ["none", "padding", "lengths", "window", "dropout"])
def test_attention_qkv_equals_attention_on_the_split_inputs(cpu_isa, rng, batch, t, heads, kv_heads, d, causal, kind):
    qkv, q, k, v = fused_projection(rng, batch, t, heads, kv_heads, d)
    grad_out = rng.standard_normal(q.shape).astype(np.float32)
    options = dict(causal=causal, **mask_options(rng, batch, t, kind))

    # dropout: the same generator state gives both the same Philox stream
    def seeded():
        return {"dropout_p": 0.25, "generator": attnkit.random.Generator(99)} if kind == "dropout" else {}

    out, grad_qkv = run_qkv(qkv, heads, kv_heads, grad_out, **options, **seeded())
    expected_out, dq, dk, dv = run(q, k, v, grad_out, **options, **seeded())
    np.testing.assert_array_equal(out, expected_out)
    expected_grad = np.concatenate([g.reshape(batch, t, g.shape[2] * d) for g in (dq, dk, dv)], axis=-1)
    np.testing.assert_array_equal(grad_qkv, expected_grad)
    if kind == "dropout" and t > 1:  # the mask did drop something
        assert not np.array_equal(out, run_qkv(qkv, heads, kv_heads, grad_out, **options)[0])


@pytest.mark.parametrize("heads, kv_heads", [(4, 4), (8, 2)])
def test_attention_qkv_inference_equals_attention(cpu_isa, rng, heads, kv_heads):
    # without gradients a few rows take the decode path, which reads the
    # strided k and v in place as well; longer sequences the tiled path
    for t in (1, 2, 40):
        qkv, q, k, v = fused_projection(rng, 2, t, heads, kv_heads, 16)
        with attnkit.no_grad():
            out = F.attention_qkv(attnkit.tensor(qkv), heads, kv_heads, causal=True).numpy()
            expected = F.attention(attnkit.tensor(q), attnkit.tensor(k), attnkit.tensor(v), causal=True).numpy()
        np.testing.assert_array_equal(out, expected)


def test_attention_qkv_default_kv_heads_and_thread_count(rng):
    qkv, q, k, v = fused_projection(rng, 2, 50, 3, 3, 8)
    grad_out = rng.standard_normal(q.shape).astype(np.float32)
    previous = attnkit.get_num_threads()
    try:
        attnkit.set_num_threads(1)
        one = run_qkv(qkv, 3, None, grad_out, causal=True)
        attnkit.set_num_threads(2)
        two = run_qkv(qkv, 3, None, grad_out, causal=True)
    finally:
        attnkit.set_num_threads(previous)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(one[0], run(q, k, v, grad_out, causal=True)[0])


def test_attention_qkv_bad_arguments(rng):
    qkv = attnkit.tensor(rng.standard_normal((2, 5, 8 * 8)).astype(np.float32))  # 4 + 2 * 2 heads of 8
    with pytest.raises(TypeError, match="attention_qkv: argument 'qkv' expected an attnkit.Tensor"):
        F.attention_qkv(qkv.numpy(), 4, 2)
    with pytest.raises(ValueError, match="attention_qkv: argument 'qkv' expected 3 dimensions"):
        F.attention_qkv(attnkit.tensor(np.ones((2, 5, 4, 16), np.float32)), 4, 2)
    with pytest.raises(TypeError, match="attention_qkv: argument 'qkv' expected float32"):
        F.attention_qkv(attnkit.tensor(np.ones((2, 5, 64), np.int32)), 4, 2)
    with pytest.raises(
        ValueError,
        match="argument 'qkv' expected a last dimension that is a positive multiple "
        "of num_heads \\+ 2 num_kv_heads = 6",
    ):
        F.attention_qkv(qkv, 4, 1)
    with pytest.raises(ValueError, match="argument 'num_kv_heads' expected a divisor of num_heads \\(4\\)"):
        F.attention_qkv(qkv, 4, 3)
    with pytest.raises(ValueError, match="argument 'num_kv_heads' expected a divisor"):
        F.attention_qkv(qkv, 4, 0)
    with pytest.raises(ValueError, match="argument 'num_heads' expected at least 1"):
        F.attention_qkv(qkv, 0, 2)
    with pytest.raises(TypeError, match="argument 'num_heads' expected an int"):
        F.attention_qkv(qkv, 4.0, 2)
    with pytest.raises(TypeError, match="argument 'num_kv_heads' expected an int"):
        F.attention_qkv(qkv, 4, True)
    with pytest.raises(ValueError, match="argument 'key_padding_mask' expected shape \\[2, 5\\]"):
        F.attention_qkv(qkv, 4, 2, key_padding_mask=attnkit.tensor(np.zeros((2, 6), bool)))
    with pytest.raises(ValueError, match="attention_qkv: argument 'dropout_p' expected a probability"):
        F.attention_qkv(qkv, 4, 2, dropout_p=1.0)
    with pytest.raises(ValueError, match="attention_qkv: argument 'window' expected a positive int"):
        F.attention_qkv(qkv, 4, 2, window=0)
    with pytest.raises(ValueError, match="attention_qkv: argument 'key_lengths' expected lengths in \\[0, 5\\]"):
        F.attention_qkv(qkv, 4, 2, key_lengths=attnkit.tensor(np.array([3, 6])))
