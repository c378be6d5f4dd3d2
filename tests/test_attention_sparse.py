"""Sparse attention patterns in the fused kernel (dilated windows, global
tokens, block masks) against the float64 reference given the same pattern
as an explicit [Tq, Tk] mask, built pair by pair from the definition."""

import numpy as np
import pytest
import reference
from conftest import assert_reduction_close
from test_attention import naive_float32, random_qkv, run

import attnkit
import attnkit.nn.functional as F


def explicit_mask(tq, tk, causal=False, window=None, dilation=1, global_tokens=(), block_mask=None, block_size=None):
    """bool [Tq, Tk] from the definition: the key is visible when causal
    allows it and either end is a global token or the pair is within the
    window, on the dilation's stride and in a shown block."""
    globals_ = {int(g) for g in global_tokens}
    visible = np.zeros((tq, tk), bool)
    for i in range(tq):
        position = i + tk - tq
        for j in range(tk):
            if causal and j > position:
                continue
            local = (
                (window is None or abs(position - j) < window)
                and (position - j) % dilation == 0
                and (block_mask is None or block_mask[position // block_size, j // block_size])
            )
            visible[i, j] = local or position in globals_ or j in globals_
    return visible


def check_pattern(rng, batch, tq, tk, heads, kv_heads, d, causal=False, key_padding_mask=None, **pattern):
    q, k, v = random_qkv(rng, batch, tq, tk, heads, kv_heads, d)
    grad_out = rng.standard_normal(q.shape).astype(np.float32)
    options = dict(pattern, causal=causal)
    mask = dict(explicit_mask=explicit_mask(tq, tk, causal=causal, **pattern))
    if key_padding_mask is not None:
        options["key_padding_mask"] = attnkit.tensor(key_padding_mask)
        mask["key_padding_mask"] = key_padding_mask
    ours = run(q, k, v, grad_out, **options)
    expected = (reference.attention(q, k, v, **mask),) + reference.attention_backward(q, k, v, grad_out, **mask)
    naive = naive_float32(q, k, v, grad_out, **mask)
    for name, a, e, n in zip(("out", "dq", "dk", "dv"), ours, expected, naive):
        assert a.shape == e.shape, name
        assert np.isfinite(a).all(), name
        assert_reduction_close(a, e, n)
    # inference (no backward to come): the same output, or with a few
    # queries (the decode path, which visits the visible keys one by one) as
    # close to the reference
    with attnkit.no_grad():
        out = F.attention(*(attnkit.tensor(x) for x in (q, k, v)), **options)
    if tq <= 4:
        assert_reduction_close(out.numpy(), expected[0], naive[0])
    else:
        np.testing.assert_array_equal(out.numpy(), ours[0])
    return mask["explicit_mask"]


def layout(rng, t, block_size, density=0.35):
    """A block mask as BigBird builds one: the diagonal blocks, a random
    share of the others, and more rows and columns than the keys need."""
    blocks = -(-t // block_size) + 1
    shown = rng.random((blocks, blocks)) < density
    np.fill_diagonal(shown, True)
    return shown


@pytest.mark.parametrize("t", [49, 145, 200])
@pytest.mark.parametrize(
    "pattern",
    [
        dict(dilation=3, window=40, causal=True),
        dict(dilation=2),
        dict(dilation=4, window=97),
        dict(global_tokens=[0, 5, 48], causal=True),
        dict(global_tokens=[0, 47], window=17),
        dict(global_tokens=[1, 16, 17, 33], window=24, dilation=2, causal=True),
        dict(block_size=32, causal=True),
        dict(block_size=16),
        dict(block_size=50, window=70, global_tokens=[3]),
        dict(block_size=64, dilation=2, causal=True),
    ],
    ids=lambda p: "-".join(f"{k}" for k in p),
)
def test_patterns(cpu_isa, rng, t, pattern):
    pattern = dict(pattern)
    pattern["global_tokens"] = [g for g in pattern.get("global_tokens", []) if g < t] or None
    if pattern["global_tokens"] is None:
        del pattern["global_tokens"]
    if "block_size" in pattern:
        pattern["block_mask"] = layout(rng, t, pattern["block_size"])
    causal = pattern.pop("causal", False)
    visible = check_pattern(rng, 2, t, t, 4, 2, 32, causal=causal, **pattern)
    assert visible.any()


@pytest.mark.parametrize("tq", [1, 3, 50])
def test_patterns_with_a_cache(cpu_isa, rng, tq):
    # the queries are the last tq positions (decoding with a KV cache)
    tk = 130
    check_pattern(rng, 2, tq, tk, 4, 1, 16, causal=True, window=60, dilation=3, global_tokens=[0, 64])
    check_pattern(rng, 1, tq, tk, 2, 2, 16, causal=True, block_size=32, block_mask=layout(rng, tk, 32))


def test_patterns_with_padding(cpu_isa, rng):
    batch, t = 4, 120
    padding = np.zeros((batch, t), bool)
    padding[0, 100:] = True
    padding[1, [0, 7, 60]] = True  # two of them global tokens
    padding[2, :] = True
    padding[3, ::5] = True
    check_pattern(rng, batch, t, t, 2, 1, 16, key_padding_mask=padding, global_tokens=[0, 60, 119], window=20)
    check_pattern(
        rng, batch, t, t, 2, 1, 16, causal=True, key_padding_mask=padding, block_size=24, block_mask=layout(rng, t, 24)
    )


@pytest.mark.parametrize("tq", [5, 50, 130])
def test_dilated_windows_with_a_cache_and_padding(cpu_isa, rng, tq):
    # the blocks run the residue classes apart: the queries' offset into the
    # keys and padded keys land in every class
    tk = 130
    padding = np.zeros((2, tk), bool)
    padding[0, 100:] = True
    padding[1, ::7] = True
    check_pattern(rng, 2, tq, tk, 4, 2, 16, causal=True, key_padding_mask=padding, window=45, dilation=3)
    check_pattern(rng, 2, tq, tk, 2, 1, 16, key_padding_mask=padding, window=30, dilation=4)
    check_pattern(rng, 1, tq, tk, 2, 2, 16, causal=True, dilation=5)


@pytest.mark.parametrize("tq", [1, 2, 4])
def test_decode_path_with_patterns(cpu_isa, rng, tq):
    # inference with a few queries against a long cache takes the decode
    # path, which reads only the keys the pattern lets through: every other
    # key and value is NaN here (and padding too); 1200 keys are split
    # across threads. With tq > 1 the queries see different keys, and the
    # global token tk - 2 is one of them.
    tk = 1200
    blocks = layout(rng, tk, 64)
    padding = np.zeros((2, tk), bool)
    padding[0, ::11] = True
    padding[1, 900:] = True
    for pattern in (
        dict(causal=True, window=300, dilation=3),
        dict(causal=True, window=200, global_tokens=[0, 5, 700, tk - 2]),
        dict(causal=True, block_size=64, block_mask=blocks),
        dict(dilation=4, window=500, global_tokens=[3, 1000], block_size=64, block_mask=blocks),
    ):
        q, k, v = random_qkv(rng, 2, tq, tk, 4, 2, 32)
        visible = explicit_mask(tq, tk, **pattern)
        for b in range(2):
            unread = padding[b] | ~visible.any(axis=0)
            k[b, unread] = np.nan
            v[b, unread] = np.nan
        with attnkit.no_grad():
            out = F.attention(
                *(attnkit.tensor(x) for x in (q, k, v)), key_padding_mask=attnkit.tensor(padding), **pattern
            ).numpy()
        kc, vc = np.nan_to_num(k, nan=0.0), np.nan_to_num(v, nan=0.0)
        mask = dict(explicit_mask=visible, key_padding_mask=padding)
        assert_reduction_close(
            out, reference.attention(q, kc, vc, **mask), naive_float32(q, kc, vc, np.zeros_like(q), **mask)[0]
        )


@pytest.mark.parametrize("causal", [False, True])
def test_many_global_tokens(cpu_isa, rng, causal):
    # more global queries than a query block holds and more global keys than
    # a key block: several gathered blocks of each
    tokens = sorted(rng.choice(200, size=150, replace=False).tolist())
    check_pattern(rng, 1, 200, 200, 2, 1, 32, causal=causal, window=10, dilation=3, global_tokens=tokens)


def test_every_key_global_is_dense(cpu_isa, rng):
    q, k, v = random_qkv(rng, 1, 70, 70, 2, 2, 16)
    grad_out = rng.standard_normal(q.shape).astype(np.float32)
    sparse = run(q, k, v, grad_out, causal=True, window=3, global_tokens=list(range(70)))
    dense = run(q, k, v, grad_out, causal=True)
    for a, b in zip(sparse, dense):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_patterns_with_dropout(cpu_isa, rng):
    batch, t, heads, kv_heads, d, p = 2, 90, 2, 1, 16, 0.3
    q, k, v = random_qkv(rng, batch, t, t, heads, kv_heads, d)
    grad_out = rng.standard_normal(q.shape).astype(np.float32)
    pattern = dict(window=20, dilation=2, global_tokens=[0, 50], causal=True)
    generator = attnkit.random.Generator(77)
    seed, offset = generator.seed, generator.offset
    ours = run(q, k, v, grad_out, dropout_p=p, generator=generator, **pattern)
    multipliers = reference.attention_dropout_multipliers((batch, heads, t, t), p, seed, offset)
    mask = dict(explicit_mask=explicit_mask(t, t, **pattern))
    expected = (reference.attention(q, k, v, dropout=multipliers, **mask),) + reference.attention_backward(
        q, k, v, grad_out, dropout=multipliers, **mask
    )
    naive = naive_float32(q, k, v, grad_out, dropout=multipliers, **mask)
    for a, e, n in zip(ours, expected, naive):
        assert_reduction_close(a, e, n)


def test_attention_qkv_takes_the_pattern(cpu_isa, rng):
    batch, t, heads, d = 2, 70, 2, 16
    qkv = rng.standard_normal((batch, t, 3 * heads * d)).astype(np.float32)
    q, k, v = (qkv[..., i * heads * d : (i + 1) * heads * d].reshape(batch, t, heads, d) for i in range(3))
    pattern = dict(causal=True, window=9, dilation=2, global_tokens=[4], block_size=16, block_mask=layout(rng, t, 16))
    fused = F.attention_qkv(attnkit.tensor(qkv), heads, **pattern).numpy()
    split = F.attention(*(attnkit.tensor(np.ascontiguousarray(x)) for x in (q, k, v)), **pattern).numpy()
    np.testing.assert_array_equal(fused, split)


@pytest.mark.parametrize(
    "options, error, message",
    [
        (dict(global_tokens=[0, 70]), ValueError, r"argument 'global_tokens' expected positions in \[0, 70\), got 70"),
        (dict(global_tokens=[-1]), ValueError, r"argument 'global_tokens' expected positions in \[0, 70\), got -1"),
        (dict(global_tokens=[3, 3]), ValueError, "argument 'global_tokens' expected distinct positions"),
        (dict(global_tokens=[0.5]), TypeError, "argument 'global_tokens' expected a sequence of ints"),
        (dict(dilation=0), ValueError, "argument 'dilation' expected a positive int"),
        (dict(block_mask=np.ones((2, 2), bool), block_size=16), ValueError, "argument 'block_mask' expected 2 dim"),
        (dict(block_mask=np.ones((5, 5), bool)), ValueError, "argument 'block_size' expected a positive int"),
        (dict(block_mask=np.ones((5, 5)), block_size=16), TypeError, "argument 'block_mask' expected bool"),
        (dict(block_size=16), ValueError, "argument 'block_size' is for block_mask"),
    ],
)
def test_bad_patterns(rng, options, error, message):
    q, k, v = (attnkit.tensor(x) for x in random_qkv(rng, 1, 70, 70, 2, 2, 8))
    with pytest.raises(error, match=message):
        F.attention(q, k, v, **options)


def test_positions_need_no_more_queries_than_keys(rng):
    q, k, v = (attnkit.tensor(x) for x in random_qkv(rng, 1, 8, 5, 2, 2, 8))
    with pytest.raises(ValueError, match="no more queries than keys"):
        F.attention(q, k, v, global_tokens=[0])


# ------------------------------------------------- modules and model configs --

PATTERNS = {
    "longformer": dict(global_tokens=[0, 9], dilation=2),
    "bigbird": dict(block_size=4, block_mask=[[(r - c) % 3 == 0 or c == 0 for c in range(6)] for r in range(6)]),
}


@pytest.mark.parametrize("name", sorted(PATTERNS))
@pytest.mark.parametrize("qkv_fused", [True, False])
def test_multi_head_attention_takes_the_pattern(cpu_isa, rng, name, qkv_fused):
    attnkit.manual_seed(3)
    module = attnkit.nn.MultiHeadAttention(32, 4, 2, qkv_fused=qkv_fused, window=6, pattern=PATTERNS[name])
    x = attnkit.tensor(rng.standard_normal((2, 21, 32)).astype(np.float32))
    out = module(x, causal=True).detach().numpy()
    # the same attention, spelled out: the projections, then F.attention
    q, k, v = module._project(x, None)
    heads = F.attention(
        q.reshape(2, 21, 4, 8), k.reshape(2, 21, 2, 8), v.reshape(2, 21, 2, 8), causal=True, window=6, **PATTERNS[name]
    )
    expected = module.out_proj(heads.reshape(2, 21, 32)).detach().numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert "pattern=" in repr(module)


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_gpt_with_a_pattern_decodes_as_it_runs_whole(cpu_isa, rng, name):
    # The positions a pattern names hold in cached decoding: the prompt, then
    # one token at a time, give the logits of the whole sequence at once.
    attnkit.manual_seed(5)
    config = attnkit.models.GPTConfig(
        vocab_size=40, block_size=24, n_layer=2, n_head=4, n_embd=32, sliding_window=7, attention_pattern=PATTERNS[name]
    )
    model = attnkit.models.GPT(config)
    model.eval()
    idx = rng.integers(0, 40, size=(2, 22))
    with attnkit.no_grad():
        whole = model(attnkit.tensor(idx)).numpy()
        caches = model.make_caches(2)
        pieces = [model(attnkit.tensor(idx[:, :5]), caches=caches).numpy()]
        pieces += [model(attnkit.tensor(idx[:, t : t + 1]), caches=caches).numpy() for t in range(5, 22)]
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), whole, rtol=2e-4, atol=2e-5)
    # and the pattern changes the result
    plain = attnkit.models.GPT(attnkit.models.GPTConfig(**{**vars(config), "attention_pattern": None}))
    plain.load_state_dict(model.state_dict())
    plain.eval()
    with attnkit.no_grad():
        assert not np.allclose(plain(attnkit.tensor(idx)).numpy(), whole)


def test_bad_module_patterns():
    with pytest.raises(ValueError, match="argument 'pattern' expected keys among"):
        attnkit.nn.MultiHeadAttention(8, 2, pattern={"stride": 2})
    with pytest.raises(ValueError, match="argument 'dilation' expected a positive int"):
        attnkit.nn.MultiHeadAttention(8, 2, pattern={"dilation": 0})
    with pytest.raises(TypeError, match="argument 'pattern' expected a dict"):
        attnkit.nn.MultiHeadAttention(8, 2, pattern=[2])
    with pytest.raises(ValueError, match="argument 'global_tokens' expected positions in"):
        attnkit.nn.MultiHeadAttention(8, 2, pattern={"global_tokens": [-1]})
    with pytest.raises(ValueError, match="field 'attention_pattern' expected global tokens in"):
        attnkit.models.GPT(
            attnkit.models.GPTConfig(
                vocab_size=8, block_size=8, n_layer=1, n_head=2, n_embd=8, attention_pattern={"global_tokens": [8]}
            )
        )
