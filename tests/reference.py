"""float64 numpy references for the kernels. Each function takes and returns
float64 arrays and says which formula it evaluates."""

from __future__ import annotations

import math

import numpy as np

_erfc = np.frompyfunc(math.erfc, 1, 1)


def erfc(x):
    # np.asarray: frompyfunc gives a Python float for 0-d input.
    return np.asarray(_erfc(np.asarray(x, np.float64)), dtype=np.float64)


def central_differences(arrays: dict, loss, step: float = 1e-6) -> dict:
    """name -> the gradient of ``loss()`` with respect to each float64 array
    of ``arrays`` (name -> array), by central differences: each entry is
    moved by +-step in place, ``loss()`` (which reads the arrays) evaluated,
    and the entry restored."""
    gradients = {}
    for name, array in arrays.items():
        gradient = np.empty_like(array)
        for position in np.ndindex(array.shape):
            original = array[position]
            array[position] = original + step
            up = loss()
            array[position] = original - step
            down = loss()
            array[position] = original
            gradient[position] = (up - down) / (2 * step)
        gradients[name] = gradient
    return gradients


# ---------------------------------------------------------------------------
# Activations: GELU (exact and tanh), ReLU, SiLU, SwiGLU.
#
# Every function is evaluated in float64 in a form with no cancellation, so its
# own error is a few float64 ulp, far below float32's. Infinite inputs get
# their limits explicitly: the closed forms would give inf * 0 = NaN there.
# NaN inputs give NaN.
# ---------------------------------------------------------------------------

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
TANH_CUBIC = 0.044715


def _with_limits(x, values, at_positive_infinity, at_negative_infinity):
    values = np.where(x == np.inf, at_positive_infinity, values)
    return np.where(x == -np.inf, at_negative_infinity, values)


def _finite_or_zero(x):
    """x with the infinities replaced by 0, so the closed forms raise no
    warnings there (those entries are overwritten by _with_limits)."""
    return np.where(np.isinf(x), 0.0, x)


def sigmoid(x):
    """1 / (1 + e^-x), as e^x / (1 + e^x) for x < 0: both tails keep their
    relative accuracy (1 + e^-x never loses the small value to 1)."""
    x = np.asarray(x, np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def normal_cdf(x):
    """Phi(x) = erfc(-x / sqrt 2) / 2: erfc keeps the lower tail accurate,
    where 1 + erf(x / sqrt 2) would cancel to 0."""
    return 0.5 * erfc(-np.asarray(x, np.float64) / math.sqrt(2.0))


def normal_pdf(x):
    x = np.asarray(x, np.float64)
    return np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def gelu_tanh_argument(x):
    """u = sqrt(2/pi) (x + 0.044715 x^3); the tanh form is x * sigmoid(2u)."""
    x = np.asarray(x, np.float64)
    return SQRT_2_OVER_PI * (x + TANH_CUBIC * x**3)


def gelu(x, approximate="none"):
    """exact: x * Phi(x) = x * erfc(-x/sqrt2) / 2.
    tanh:  x/2 (1 + tanh u) = x * sigmoid(2u), written as the sigmoid because
           1 + tanh u cancels for x << 0 (in float64 too)."""
    x = np.asarray(x, np.float64)
    finite = _finite_or_zero(x)
    if approximate == "none":
        values = finite * normal_cdf(finite)
    elif approximate == "tanh":
        values = finite * sigmoid(2.0 * gelu_tanh_argument(finite))
    else:
        raise ValueError(approximate)
    return _with_limits(x, values, np.inf, 0.0)


def gelu_derivative_terms(x, approximate="none"):
    """gelu'(x) as its two terms (first, second), gelu' = first + second:
    exact: Phi(x) + x phi(x);
    tanh:  s + 2x u'(x) s (1 - s), with s = sigmoid(2u).
    The terms have opposite signs for x < 0 and cancel where gelu' crosses
    zero, so tests scale their tolerance by |first| + |second|."""
    x = np.asarray(x, np.float64)
    finite = _finite_or_zero(x)
    if approximate == "none":
        first = normal_cdf(finite)
        second = finite * normal_pdf(finite)
    elif approximate == "tanh":
        u = gelu_tanh_argument(finite)
        s = sigmoid(2.0 * u)
        # s (1 - s) from the sigmoid of the other sign: no 1 - s cancellation.
        s_one_minus_s = s * sigmoid(-2.0 * u)
        du_dx = SQRT_2_OVER_PI * (1.0 + 3.0 * TANH_CUBIC * finite**2)
        first = s
        second = 2.0 * finite * du_dx * s_one_minus_s
    else:
        raise ValueError(approximate)
    return _with_limits(x, first, 1.0, 0.0), _with_limits(x, second, 0.0, 0.0)


def gelu_derivative(x, approximate="none"):
    first, second = gelu_derivative_terms(x, approximate)
    return first + second


def relu(x):
    """max(x, 0); NaN stays NaN."""
    x = np.asarray(x, np.float64)
    return np.where(x > 0, x, np.where(np.isnan(x), x, 0.0))


def relu_derivative(x):
    """1 for x > 0, 0 for x <= 0 (at 0 PyTorch's choice), NaN at NaN."""
    x = np.asarray(x, np.float64)
    return np.where(x > 0, 1.0, np.where(np.isnan(x), np.nan, 0.0))


def silu(x):
    """x * sigmoid(x)."""
    x = np.asarray(x, np.float64)
    finite = _finite_or_zero(x)
    return _with_limits(x, finite * sigmoid(finite), np.inf, 0.0)


def silu_derivative_terms(x):
    """silu'(x) = s + x s (1 - s), s = sigmoid(x), as its two terms; they
    cancel where silu' crosses zero (x near -1.28)."""
    x = np.asarray(x, np.float64)
    finite = _finite_or_zero(x)
    s = sigmoid(finite)
    second = finite * s * sigmoid(-finite)
    return _with_limits(x, s, 1.0, 0.0), _with_limits(x, second, 0.0, 0.0)


def silu_derivative(x):
    first, second = silu_derivative_terms(x)
    return first + second


def swiglu(x):
    """x [..., 2H] -> silu(x[..., :H]) * x[..., H:] (the gate half first)."""
    x = np.asarray(x, np.float64)
    gate, up = np.split(x, 2, axis=-1)
    return silu(gate) * up


def swiglu_backward(grad_output, x):
    """d/dx of sum(grad_output * swiglu(x)): [..., 2H], the gate half
    grad_output * up * silu'(gate), the up half grad_output * silu(gate)."""
    x = np.asarray(x, np.float64)
    grad_output = np.asarray(grad_output, np.float64)
    gate, up = np.split(x, 2, axis=-1)
    return np.concatenate([grad_output * up * silu_derivative(gate), grad_output * silu(gate)], axis=-1)


# ---- gemm ---------------------------------------------------------------


def matmul(a, b):
    """float64 product of float64 copies of the operands."""
    return np.matmul(np.asarray(a, np.float64), np.asarray(b, np.float64))


def matmul_naive_float32(a, b):
    """The same product summed plainly in float32: one k at a time, a rounded
    multiply and a rounded add (no FMA, no blocking). The yardstick for the
    accuracy of a reordered float32 GEMM."""
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    out = np.zeros(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1]), np.float32)
    for p in range(a.shape[-1]):
        out += a[..., :, p : p + 1] * b[..., p : p + 1, :]
    return out


def linear_backward(x, weight, grad_out):
    """Gradients of y = x @ weight.T + bias: (dx, dweight, dbias), float64."""
    x = np.asarray(x, np.float64).reshape(-1, weight.shape[1])
    g = np.asarray(grad_out, np.float64).reshape(-1, weight.shape[0])
    w = np.asarray(weight, np.float64)
    return g @ w, g.T @ x, g.sum(axis=0)


# ---- attention ----------------------------------------------------------


def attention_visibility(
    batch, tq, tk, causal=False, window=None, key_lengths=None, key_padding_mask=None, explicit_mask=None
):
    """bool [B, 1, Tq, Tk]: which key each query may see (query i at position
    i + Tk - Tq). explicit_mask: bool [Tq, Tk], further pairs to hide (False)."""
    position = np.arange(tq)[:, None] + tk - tq
    j = np.arange(tk)[None, :]
    visible = np.ones((batch, 1, tq, tk), bool)
    if explicit_mask is not None:
        visible = visible & np.asarray(explicit_mask, bool)
    if causal:
        visible = visible & (j <= position)
    if window is not None:
        visible = visible & (np.abs(position - j) < window)
    if key_lengths is not None:
        visible = visible & (j[None, None] < np.asarray(key_lengths)[:, None, None, None])
    if key_padding_mask is not None:
        visible = visible & ~np.asarray(key_padding_mask)[:, None, None, :]
    return visible


def attention_probabilities(q, k, visible, scale=None):
    """float64 softmax(scale q k^T) over visible keys, [B, H, Tq, Tk]; rows with
    no visible key are all zero. k has kv_heads heads, repeated per group."""
    q = np.asarray(q, np.float64)
    k = np.asarray(k, np.float64)
    group = q.shape[2] // k.shape[2]
    k = np.repeat(k, group, axis=2)
    scale = 1 / np.sqrt(q.shape[-1]) if scale is None else scale
    s = np.einsum("bihd,bjhd->bhij", q, k) * scale
    s = np.where(visible, s, -np.inf)
    row_max = s.max(axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    p = np.where(visible, np.exp(s - row_max), 0.0)
    total = p.sum(axis=-1, keepdims=True)
    return np.where(total > 0, p / np.where(total > 0, total, 1.0), 0.0)


def attention(q, k, v, scale=None, dropout=None, **mask):
    """float64 attention output [B, Tq, H, D]; masked keys never touch the
    result. dropout: [B, H, Tq, Tk] multipliers on the normalized weights
    (0 where dropped, 1/(1-p) where kept), or None."""
    q = np.asarray(q, np.float64)
    v = np.where(np.isfinite(v), v, 0.0) if "key_padding_mask" in mask or "key_lengths" in mask else v
    visible = attention_visibility(q.shape[0], q.shape[1], np.shape(k)[1], **mask)
    k = np.where(np.isfinite(k), k, 0.0) if "key_padding_mask" in mask or "key_lengths" in mask else k
    p = attention_probabilities(q, k, visible, scale)
    if dropout is not None:
        p = p * dropout
    group = q.shape[2] // np.shape(v)[2]
    return np.einsum("bhij,bjhd->bihd", p, np.repeat(np.asarray(v, np.float64), group, axis=2))


def attention_dropout_multipliers(shape, p, seed, offset):
    """[B, H, Tq, Tk] multipliers of attention dropout: element (b, h, i, j) is
    number ((b H + h) Tq + i) Tk + j of the stream (seed, offset)."""
    keep = dropout_keep_mask(int(np.prod(shape)), p, seed, offset).reshape(shape)
    return np.where(keep, 1.0 / (1.0 - p), 0.0)


def attention_backward(q, k, v, grad_out, scale=None, dropout=None, **mask):
    """float64 (dq, dk, dv) of attention, from the softmax Jacobian:
    dV = P^T dO, dP = dO V^T, dS = P * (dP - rowsum(dP * P)), dQ = scale dS K,
    dK = scale dS^T Q; with grouped K/V the gradients of a group are summed.
    With dropout multipliers M: dV = (P M)^T dO and dP = (dO V^T) M."""
    q, k, v, g = (np.asarray(x, np.float64) for x in (q, k, v, grad_out))
    batch, tq, heads, d = q.shape
    tk, kv_heads = k.shape[1], k.shape[2]
    group = heads // kv_heads
    scale = 1 / np.sqrt(d) if scale is None else scale
    visible = attention_visibility(batch, tq, tk, **mask)
    p = attention_probabilities(q, k, visible, scale)
    k_full = np.repeat(k, group, axis=2)
    v_full = np.repeat(v, group, axis=2)
    m = np.ones_like(p) if dropout is None else dropout
    dv_full = np.einsum("bhij,bihd->bjhd", p * m, g)
    dp = np.einsum("bihd,bjhd->bhij", g, v_full) * m
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
    dq = scale * np.einsum("bhij,bjhd->bihd", ds, k_full)
    dk_full = scale * np.einsum("bhij,bihd->bjhd", ds, q)

    def fold(x):
        return x.reshape(batch, tk, kv_heads, group, d).sum(axis=3)

    return dq, fold(dk_full), fold(dv_full)


# ---------------------------------------------------------------- random ---
# Philox 4x32-10 (Salmon et al., SC'11) and attnkit's streams over it, in
# numpy uint64 arithmetic (every 32x32-bit product fits in 64 bits).

PHILOX_MULTIPLIERS = (0xD2511F53, 0xCD9E8D57)
PHILOX_WEYL = (0x9E3779B9, 0xBB67AE85)
_MASK32 = np.uint64(0xFFFFFFFF)


def philox4x32_10(counters, key):
    """Philox 4x32-10 of counters [n, 4] (uint32 words) under key (k0, k1):
    returns [n, 4] uint32."""
    c = [np.asarray(counters, np.uint64)[:, w].copy() for w in range(4)]
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    m0, m1 = np.uint64(PHILOX_MULTIPLIERS[0]), np.uint64(PHILOX_MULTIPLIERS[1])
    for _ in range(10):
        product0 = m0 * c[0]
        product1 = m1 * c[2]
        c = [
            (product1 >> np.uint64(32)) ^ c[1] ^ k0,
            product1 & _MASK32,
            (product0 >> np.uint64(32)) ^ c[3] ^ k1,
            product0 & _MASK32,
        ]
        k0 = (k0 + np.uint64(PHILOX_WEYL[0])) & _MASK32
        k1 = (k1 + np.uint64(PHILOX_WEYL[1])) & _MASK32
    return np.stack(c, axis=1).astype(np.uint32)


def philox_stream(n, seed, offset):
    """The first n numbers (uint32) of attnkit's stream (seed, offset): element
    i is word (i // 16) % 4 of the block with counter (low, high word of
    b = 16 (i // 64) + i % 16, low, high word of offset), keyed by the seed."""
    i = np.arange(n, dtype=np.uint64)
    block = np.uint64(16) * (i // np.uint64(64)) + i % np.uint64(16)
    word = ((i // np.uint64(16)) % np.uint64(4)).astype(np.int64)
    counters = np.stack(
        [
            block & _MASK32,
            block >> np.uint64(32),
            np.full(n, offset & 0xFFFFFFFF, np.uint64),
            np.full(n, offset >> 32, np.uint64),
        ],
        axis=1,
    )
    blocks = philox4x32_10(counters, (seed & 0xFFFFFFFF, seed >> 32))
    return blocks[np.arange(n), word]


def dropout_keep_mask(n, p, seed, offset):
    """Element i is kept when its number is at least round(p * 2^32)."""
    return philox_stream(n, seed, offset).astype(np.int64) >= round(p * 2.0**32)


def dropout(x, p, seed, offset):
    """y = x / (1 - p) where kept, else 0 (float64)."""
    x = np.asarray(x, np.float64)
    keep = dropout_keep_mask(x.size, p, seed, offset).reshape(x.shape)
    return np.where(keep, x / (1.0 - p), 0.0)


def dropout_backward(dy, p, seed, offset):
    """dL/dx of dropout: the same mask and scale applied to dy."""
    return dropout(dy, p, seed, offset)


# ------------------------------------------------------------- embedding ---


def embedding(ids, weight):
    """out[..., :] = weight[ids[...], :]."""
    return np.asarray(weight, np.float64)[np.asarray(ids)]


def embedding_backward(dout, ids, num_embeddings):
    """dweight[v] = sum of dout[n] over the positions n with ids[n] == v."""
    ids = np.asarray(ids).reshape(-1)
    dout = np.asarray(dout, np.float64)
    dweight = np.zeros((num_embeddings, dout.shape[-1]))
    np.add.at(dweight, ids, dout.reshape(ids.size, -1))
    return dweight


# -------------------------------------------------------------- position ---
# Frequencies and sin/cos through Python's math module (the C library's pow,
# sin and cos, as the kernels use): the float64 angles are then the very ones
# the kernels compute.


def _inverse_frequencies(base, pairs, dim):
    return np.array([math.pow(base, -(2 * i) / dim) for i in range(pairs)])


def sinusoidal_position_encoding(length, dim, offset=0):
    """table[t, j] = sin(p w_i) (even j) or cos(p w_i) (odd j), p = offset + t,
    i = j // 2, w_i = 10000^(-2i/dim) (Vaswani et al. 2017, section 3.5)."""
    frequencies = _inverse_frequencies(10000.0, (dim + 1) // 2, dim)
    table = np.empty((length, dim))
    for t in range(length):
        position = float(offset + t)
        for j in range(dim):
            angle = position * frequencies[j // 2]
            table[t, j] = math.sin(angle) if j % 2 == 0 else math.cos(angle)
    return table


def rope_angles(T, D, offset, base):
    """theta[t, i] = (offset + t) * base^(-2i/D), [T, D/2]."""
    positions = np.arange(offset, offset + T, dtype=np.float64)
    return positions[:, None] * _inverse_frequencies(base, D // 2, D)[None, :]


def _rope_pairs(x, interleaved):
    """Views (a, b) of the pairs of x [B, T, H, D], each [B, T, H, D/2]."""
    half = x.shape[-1] // 2
    if interleaved:
        return x[..., 0::2], x[..., 1::2]
    return x[..., :half], x[..., half:]


def _rope_join(first, second, interleaved):
    if interleaved:
        return np.stack([first, second], axis=-1).reshape(first.shape[:-1] + (2 * first.shape[-1],))
    return np.concatenate([first, second], axis=-1)


def rope(x, offset, base, interleaved):
    """Rotates pair i of row t by theta[t, i]: (a, b) -> (a c - b s, a s + b c);
    pairs are (x[2i], x[2i+1]) when interleaved, else (x[i], x[i + D/2])."""
    x = np.asarray(x, np.float64)
    theta = rope_angles(x.shape[1], x.shape[3], offset, base)[None, :, None, :]
    a, b = _rope_pairs(x, interleaved)
    return _rope_join(a * np.cos(theta) - b * np.sin(theta), a * np.sin(theta) + b * np.cos(theta), interleaved)


def rope_backward(dy, offset, base, interleaved):
    """dL/dx = R^T dy: the rotation by -theta."""
    dy = np.asarray(dy, np.float64)
    theta = rope_angles(dy.shape[1], dy.shape[3], offset, base)[None, :, None, :]
    a, b = _rope_pairs(dy, interleaved)
    return _rope_join(a * np.cos(theta) + b * np.sin(theta), -a * np.sin(theta) + b * np.cos(theta), interleaved)


def rope_at(x, positions, frequencies, interleaved):
    """RoPE of x [B, T, H, D] with row (b, t) at positions[b, t] and pair i
    turning at frequencies[i] (any positions and frequencies)."""
    x = np.asarray(x, np.float64)
    theta = (np.asarray(positions, np.float64)[..., None] * np.asarray(frequencies, np.float64))[:, :, None, :]
    a, b = _rope_pairs(x, interleaved)
    return _rope_join(a * np.cos(theta) - b * np.sin(theta), a * np.sin(theta) + b * np.cos(theta), interleaved)


def rope_term_magnitudes(x, offset, base, interleaved):
    """|a c| + |b s| and |a s| + |b c| in the output's layout: the size of the
    two terms each output is a sum or difference of."""
    x = np.asarray(x, np.float64)
    theta = rope_angles(x.shape[1], x.shape[3], offset, base)[None, :, None, :]
    a, b = _rope_pairs(np.abs(x), interleaved)
    c, s = np.abs(np.cos(theta)), np.abs(np.sin(theta))
    return _rope_join(a * c + b * s, a * s + b * c, interleaved)


# ----------------------------------------------------------------- optim ---


def adamw(param, grad, exp_avg, exp_avg_sq, *, step, lr, beta1, beta2, eps, weight_decay, decay=True):
    """torch.optim.AdamW's update (its single-tensor path, step by step) in
    float64; returns the new (param, exp_avg, exp_avg_sq)."""
    p, g, m, v = (np.asarray(a, np.float64) for a in (param, grad, exp_avg, exp_avg_sq))
    if decay:
        p = p * (1 - lr * weight_decay)  # param.mul_(1 - lr * weight_decay)
    m = m + (1 - beta1) * (g - m)  # exp_avg.lerp_(grad, 1 - beta1)
    v = v * beta2 + (1 - beta2) * g * g  # exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    step_size = lr / (1 - beta1**step)
    denom = np.sqrt(v) / math.sqrt(1 - beta2**step) + eps
    p = p - step_size * m / denom  # param.addcdiv_(exp_avg, denom, value=-step_size)
    return p, m, v


def adamw_term_magnitudes(param, grad, exp_avg, exp_avg_sq, *, step, lr, beta1, beta2, eps, weight_decay, decay=True):
    """The size of the terms each output of the update is a sum or difference
    of: |m| + (1 - beta1) (|g| + |m|) for the new m, the new v itself (a sum
    of non-negative terms), and |p * decay| + step_size * (m's terms) / denom
    for the new p."""
    p, g, m, v = (np.abs(np.asarray(a, np.float64)) for a in (param, grad, exp_avg, exp_avg_sq))
    decay_factor = abs(1 - lr * weight_decay) if decay else 1.0
    m_terms = m + (1 - beta1) * (g + m)
    v_new = v * beta2 + (1 - beta2) * g * g
    denom = np.sqrt(v_new) / math.sqrt(1 - beta2**step) + eps
    p_terms = p * decay_factor + lr / (1 - beta1**step) * m_terms / denom
    return p_terms, m_terms, v_new


def global_norm(arrays):
    """sqrt of the sum of squares of every element of every array."""
    return math.sqrt(sum(float(np.sum(np.asarray(a, np.float64) ** 2)) for a in arrays))


# ---------------------------------------------------------------------------
# softmax, norm, loss. These evaluate their formula in the dtype of their
# inputs: float64 inputs give the reference; float32 inputs give the naive
# float32 computation of the same quantity that assert_reduction_close
# measures a kernel against.
# ---------------------------------------------------------------------------


def _shifted(z):
    """z minus its row max, with rows of only -inf shifted by 0 (not -inf)."""
    m = np.max(z, axis=-1, keepdims=True)
    m = np.where(np.isneginf(m), np.zeros_like(m), m)
    return z - m


def softmax(x, scale=1.0):
    """softmax(scale * x) over the last axis; a row of only -inf gives 0."""
    e = np.exp(_shifted(x * x.dtype.type(scale)))
    s = np.sum(e, axis=-1, keepdims=True)
    return e / np.where(s == 0, np.ones_like(s), s)


def log_softmax(x, scale=1.0):
    """log(softmax(scale * x)) = (z - m) - log sum exp(z - m), z = scale * x;
    a row of only -inf gives -inf."""
    d = _shifted(x * x.dtype.type(scale))
    s = np.sum(np.exp(d), axis=-1, keepdims=True)
    with np.errstate(divide="ignore"):
        return np.where(s == 0, -np.inf, d - np.log(np.where(s == 0, np.ones_like(s), s)))


def softmax_backward(dy, y, scale=1.0):
    """dx = scale * y * (dy - sum(dy * y)) from the output y of softmax."""
    dot = np.sum(dy * y, axis=-1, keepdims=True)
    return y * (dy - dot) * y.dtype.type(scale)


def log_softmax_backward(dy, y, scale=1.0):
    """dx = scale * (dy - exp(y) * sum(dy)) from the output y of log_softmax."""
    return (dy - np.exp(y) * np.sum(dy, axis=-1, keepdims=True)) * y.dtype.type(scale)


def layer_norm(x, weight=None, bias=None, eps=1e-5):
    """(y, mean, rstd): y = (x - mean) * rstd * weight + bias over the last axis,
    rstd = 1 / sqrt(var + eps) with the biased variance (two passes)."""
    mean = np.mean(x, axis=-1, keepdims=True)
    var = np.mean((x - mean) ** 2, axis=-1, keepdims=True)
    rstd = 1 / np.sqrt(var + x.dtype.type(eps))
    y = (x - mean) * rstd
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y, mean[..., 0], rstd[..., 0]


def layer_norm_backward(dy, x, weight=None, eps=1e-5):
    """(dx, dweight, dbias) of layer_norm, with g = dy * weight and x_hat the
    normalized x: dx = rstd * (g - mean(g) - x_hat * mean(g * x_hat)),
    dweight = sum over rows of dy * x_hat, dbias = sum over rows of dy."""
    _, mean, rstd = layer_norm(x, eps=eps)
    rstd = rstd[..., None]
    x_hat = (x - mean[..., None]) * rstd
    g = dy if weight is None else dy * weight
    dx = rstd * (g - np.mean(g, axis=-1, keepdims=True) - x_hat * np.mean(g * x_hat, axis=-1, keepdims=True))
    rows = dy.reshape(-1, dy.shape[-1])
    return dx, np.sum((dy * x_hat).reshape(rows.shape), axis=0), np.sum(rows, axis=0)


def rms_norm(x, weight=None, eps=float(np.finfo(np.float32).eps)):
    """(y, rstd): y = x * rstd * weight, rstd = 1 / sqrt(mean(x^2) + eps)."""
    rstd = 1 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + x.dtype.type(eps))
    y = x * rstd
    if weight is not None:
        y = y * weight
    return y, rstd[..., 0]


def rms_norm_backward(dy, x, weight=None, eps=float(np.finfo(np.float32).eps)):
    """(dx, dweight): dx = rstd * (g - x_hat * mean(g * x_hat)), g = dy * weight,
    x_hat = x * rstd; dweight = sum over rows of dy * x_hat."""
    _, rstd = rms_norm(x, eps=eps)
    rstd = rstd[..., None]
    x_hat = x * rstd
    g = dy if weight is None else dy * weight
    dx = rstd * (g - x_hat * np.mean(g * x_hat, axis=-1, keepdims=True))
    return dx, np.sum((dy * x_hat).reshape(-1, dy.shape[-1]), axis=0)


def cross_entropy(logits, targets, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
    """PyTorch's cross-entropy with label smoothing e: per row
    loss = -(1 - e) log p_t - e mean_j log p_j (0 where the target is
    ignore_index), then averaged over the rows not ignored ("mean"; NaN when
    there are none), summed ("sum") or returned per row ("none")."""
    targets = np.asarray(targets)
    kept = targets != ignore_index
    logp = log_softmax(logits)
    rows = np.arange(len(targets))
    losses = -(1 - label_smoothing) * logp[rows, np.where(kept, targets, 0)]
    if label_smoothing:
        losses = losses - label_smoothing * np.mean(logp, axis=-1)
    losses = np.where(kept, losses, 0).astype(logits.dtype)
    if reduction == "none":
        return losses
    total = np.sum(losses)
    if reduction == "sum":
        return total
    with np.errstate(invalid="ignore"):
        return total / logits.dtype.type(np.count_nonzero(kept))


def cross_entropy_backward(grad, logits, targets, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
    """dlogits = g_r * (softmax(logits) - q) per row, q = (1 - e) onehot + e / V;
    g_r = grad[r] ("none"), grad ("sum"), grad / count ("mean"); 0 on ignored rows."""
    targets = np.asarray(targets)
    kept = targets != ignore_index
    n, vocab = logits.shape
    q = np.zeros_like(logits)
    q[np.arange(n), np.where(kept, targets, 0)] = 1 - label_smoothing
    q += logits.dtype.type(label_smoothing / vocab)
    if reduction == "none":
        g = np.asarray(grad)[:, None]
    elif reduction == "sum":
        g = np.asarray(grad)
    else:
        g = np.asarray(grad) / logits.dtype.type(max(np.count_nonzero(kept), 1))
    return np.where(kept[:, None], (softmax(logits) - q) * g, 0).astype(logits.dtype)


# ------------------------------------------------------------- nn layers ---
# Re-implementations of the nn layers, each a small class holding its
# parameters as numpy arrays, with forward(x) and backward(x, grad_output) ->
# (grad_x, {parameter name: gradient}). They compute in the dtype of their
# arrays: float64 gives the reference; float32 gives the plain same-dtype
# computation that assert_reduction_close measures a layer against.


def _activation_and_slope(pre, activation):
    if activation is None:
        return pre, np.ones_like(pre)
    if activation == "relu":
        return relu(pre), relu_derivative(pre)
    approximate = "tanh" if activation == "gelu_tanh" else "none"
    return gelu(pre, approximate), gelu_derivative(pre, approximate)


class LinearLayer:
    """y = activation(x W^T + b), W [out, in]; float64 only (the plain
    float32 product is matmul_naive_float32)."""

    def __init__(self, weight, bias=None, activation=None):
        self.parameters = {"weight": np.asarray(weight, np.float64)}
        if bias is not None:
            self.parameters["bias"] = np.asarray(bias, np.float64)
        self.activation = activation

    def pre_activation(self, x):
        pre = np.asarray(x, np.float64) @ self.parameters["weight"].T
        return pre + self.parameters["bias"] if "bias" in self.parameters else pre

    def forward(self, x):
        return _activation_and_slope(self.pre_activation(x), self.activation)[0]

    def backward(self, x, grad_output):
        x = np.asarray(x, np.float64)
        _, slope = _activation_and_slope(self.pre_activation(x), self.activation)
        grad_pre = np.asarray(grad_output, np.float64) * slope
        rows_x = x.reshape(-1, x.shape[-1])
        rows_grad = grad_pre.reshape(-1, grad_pre.shape[-1])
        grads = {"weight": rows_grad.T @ rows_x}
        if "bias" in self.parameters:
            grads["bias"] = rows_grad.sum(axis=0)
        return grad_pre @ self.parameters["weight"], grads


class EmbeddingLayer:
    """out[..., :] = weight[ids[...], :]; no gradient for the ids."""

    def __init__(self, weight):
        self.parameters = {"weight": np.asarray(weight, np.float64)}

    def forward(self, ids):
        return embedding(ids, self.parameters["weight"])

    def backward(self, ids, grad_output):
        return None, {"weight": embedding_backward(grad_output, ids, self.parameters["weight"].shape[0])}


class LayerNormLayer:
    """y = (x - mean) / sqrt(var + eps) * weight + bias over the last axis,
    var the biased variance (mean of squared deviations, two passes)."""

    def __init__(self, weight=None, bias=None, eps=1e-5, dtype=np.float64):
        self.dtype = dtype
        self.parameters = {
            name: np.asarray(value, dtype) for name, value in (("weight", weight), ("bias", bias)) if value is not None
        }
        self.eps = eps

    def _normalized(self, x):
        x = np.asarray(x, self.dtype)
        mean = np.mean(x, axis=-1, keepdims=True)
        variance = np.mean((x - mean) ** 2, axis=-1, keepdims=True)
        rstd = 1 / np.sqrt(variance + self.dtype(self.eps))
        return (x - mean) * rstd, rstd

    def forward(self, x):
        y, _ = self._normalized(x)
        if "weight" in self.parameters:
            y = y * self.parameters["weight"]
        if "bias" in self.parameters:
            y = y + self.parameters["bias"]
        return y

    def backward(self, x, grad_output):
        """dx = rstd (g - mean(g) - x_hat mean(g x_hat)), g = dy * weight;
        dweight = sum over rows of dy x_hat; dbias = sum over rows of dy."""
        x_hat, rstd = self._normalized(x)
        dy = np.asarray(grad_output, self.dtype)
        g = dy * self.parameters["weight"] if "weight" in self.parameters else dy
        dx = rstd * (g - np.mean(g, axis=-1, keepdims=True) - x_hat * np.mean(g * x_hat, axis=-1, keepdims=True))
        rows = dy.reshape(-1, dy.shape[-1])
        grads = {}
        if "weight" in self.parameters:
            grads["weight"] = np.sum((dy * x_hat).reshape(rows.shape), axis=0)
        if "bias" in self.parameters:
            grads["bias"] = np.sum(rows, axis=0)
        return dx, grads


class RMSNormLayer:
    """y = x / sqrt(mean(x^2) + eps) * weight over the last axis (Zhang and
    Sennrich, 2019); eps None means float32's machine epsilon, as PyTorch."""

    def __init__(self, weight=None, eps=None, dtype=np.float64):
        self.dtype = dtype
        self.parameters = {} if weight is None else {"weight": np.asarray(weight, dtype)}
        self.eps = float(np.finfo(np.float32).eps) if eps is None else eps

    def _normalized(self, x):
        x = np.asarray(x, self.dtype)
        rstd = 1 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.dtype(self.eps))
        return x * rstd, rstd

    def forward(self, x):
        y, _ = self._normalized(x)
        return y * self.parameters["weight"] if "weight" in self.parameters else y

    def backward(self, x, grad_output):
        """dx = rstd (g - x_hat mean(g x_hat)), g = dy * weight; dweight =
        sum over rows of dy x_hat."""
        x_hat, rstd = self._normalized(x)
        dy = np.asarray(grad_output, self.dtype)
        g = dy * self.parameters["weight"] if "weight" in self.parameters else dy
        dx = rstd * (g - x_hat * np.mean(g * x_hat, axis=-1, keepdims=True))
        grads = {}
        if "weight" in self.parameters:
            grads["weight"] = np.sum((dy * x_hat).reshape(-1, dy.shape[-1]), axis=0)
        return dx, grads


class DropoutLayer:
    """Dropout with the mask of the stream (seed, offset) (see dropout above)."""

    def __init__(self, p, seed, offset):
        self.parameters = {}
        self.p, self.seed, self.offset = p, seed, offset

    def forward(self, x):
        return dropout(x, self.p, self.seed, self.offset)

    def backward(self, x, grad_output):
        return dropout_backward(grad_output, self.p, self.seed, self.offset), {}


# ------------------------------------------------------------- optim: SGD ---


def sgd(param, grad, momentum_buffer, *, lr, momentum, dampening, weight_decay, nesterov):
    """torch.optim.SGD's update (its single-tensor path) in float64;
    ``momentum_buffer`` is None before the first step. Returns the new
    (param, momentum_buffer); the buffer stays None without momentum."""
    p, g = np.asarray(param, np.float64), np.asarray(grad, np.float64)
    d = g + weight_decay * p if weight_decay != 0 else g  # d_p = grad.add(param, alpha=weight_decay)
    buffer = None
    if momentum != 0:
        if momentum_buffer is None:
            buffer = d.copy()  # buf = torch.clone(d_p)
        else:  # buf.mul_(momentum).add_(d_p, alpha=1 - dampening)
            buffer = np.asarray(momentum_buffer, np.float64) * momentum + (1 - dampening) * d
        d = d + momentum * buffer if nesterov else buffer
    return p - lr * d, buffer  # param.add_(d_p, alpha=-lr)


def sgd_term_magnitudes(param, grad, momentum_buffer, *, lr, momentum, dampening, weight_decay, nesterov):
    """The size of the terms the new param and buffer are sums of (each
    quantity of sgd() with every term replaced by its absolute value)."""
    p, g = np.abs(np.asarray(param, np.float64)), np.abs(np.asarray(grad, np.float64))
    d = g + abs(weight_decay) * p
    buffer = None
    if momentum != 0:
        buffer = d if momentum_buffer is None else np.abs(momentum_buffer) * momentum + abs(1 - dampening) * d
        d = d + momentum * buffer if nesterov else buffer
    return p + lr * d, buffer


# ----------------------------------------------------------- elementwise ---
# Arithmetic, reductions and selections in float64. The gradient of a
# broadcast operand is the output's gradient summed over the dimensions the
# operand was broadcast along (sum_to_shape).

_BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}


def binary(a, b, op):
    """a op b with numpy broadcasting (x / 0 gives +-inf or NaN, as IEEE)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _BINARY[op](np.asarray(a, np.float64), np.asarray(b, np.float64))


def sum_to_shape(x, shape):
    """x summed over the leading dimensions `shape` lacks and over those where
    `shape` has 1 and x does not: the inverse of broadcasting `shape` to x."""
    x = np.asarray(x, np.float64)
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, size in enumerate(shape) if size == 1 and x.shape[lead + i] != 1)
    return x.sum(axis=axes).reshape(shape)


def binary_terms(grad, a, b, op):
    """The elementwise gradient terms of sum(grad * (a op b)) for a and b, in
    the output's (broadcast) shape, before sum_to_shape:
    add (g, g), sub (g, -g), mul (g b, g a), div (g / b, -g a / b^2)."""
    g, a, b = (np.asarray(v, np.float64) for v in (grad, a, b))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        terms = {"add": (g, g), "sub": (g, -g), "mul": (g * b, g * a), "div": (g / b, -g * a / (b * b))}[op]
    return tuple(np.broadcast_to(t, g.shape) for t in terms)


def binary_backward(grad, a, b, op):
    """(d/da, d/db) of sum(grad * (a op b)), each with its operand's shape."""
    da, db = binary_terms(grad, a, b, op)
    return sum_to_shape(da, np.shape(a)), sum_to_shape(db, np.shape(b))


def reduce_sum(x, dims, keepdim=False):
    return np.sum(np.asarray(x, np.float64), axis=tuple(dims), keepdims=keepdim)


def reduce_mean(x, dims, keepdim=False):
    x = np.asarray(x, np.float64)
    count = math.prod(x.shape[d] for d in {d % x.ndim for d in dims}) if x.ndim else 1
    with np.errstate(invalid="ignore"):
        return reduce_sum(x, dims, keepdim) / count


def max_last_dim(x):
    """(values, indices) of the max over the last dimension: the first index
    where it occurs, NaN counting as larger than every number."""
    x = np.asarray(x, np.float64)
    nan = np.isnan(x)
    has_nan = nan.any(axis=-1)
    values = np.where(has_nan, np.nan, np.max(np.where(nan, -np.inf, x), axis=-1))
    indices = np.where(has_nan, np.argmax(nan, axis=-1), np.argmax(np.where(nan, -np.inf, x), axis=-1))
    return values, indices


def where_backward(grad, condition, a_shape, b_shape):
    """(d/da, d/db) of sum(grad * where(condition, a, b))."""
    g = np.asarray(grad, np.float64)
    condition = np.broadcast_to(condition, g.shape)
    return (sum_to_shape(np.where(condition, g, 0.0), a_shape), sum_to_shape(np.where(condition, 0.0, g), b_shape))


def cast_float_to_integer(x, dtype):
    """The native float -> integer rule: truncate toward zero, saturate at the
    type's limits, NaN -> 0."""
    info = np.iinfo(dtype)
    limit = 2.0 ** (info.bits - 1)

    def convert(value):
        if math.isnan(value):
            return 0
        if value >= limit:
            return int(info.max)
        if value < -limit:
            return int(info.min)
        return int(value)  # int() truncates toward zero

    return np.array([convert(float(v)) for v in np.ravel(x)], dtype).reshape(np.shape(x))


# ----------------------------------------------------------------- shape ---
# Data movement in numpy; exact, so the dtype is kept. Gradients in float64.


def narrow_backward(grad, input_shape, dim, start):
    out = np.zeros(input_shape, np.float64)
    index = [slice(None)] * len(input_shape)
    index[dim] = slice(start, start + np.shape(grad)[dim])
    out[tuple(index)] = grad
    return out


def index_select(x, dim, index):
    return np.take(x, np.asarray(index).reshape(-1), axis=dim)


def index_select_backward(grad, input_shape, dim, index):
    """Slices of grad added back to the rows index names along dim."""
    out = np.zeros(input_shape, np.float64)
    g = np.moveaxis(np.asarray(grad, np.float64), dim, 0)
    target = np.moveaxis(out, dim, 0)  # a view: writes land in out
    for j, i in enumerate(np.asarray(index).reshape(-1)):
        target[i] += g[j]
    return out


def _gather_coordinates(index, dim):
    """For every element of index, its coordinates in x: its own, with the
    coordinate along dim replaced by its value."""
    coordinates = list(np.indices(np.shape(index)))
    coordinates[dim] = np.asarray(index)
    return tuple(coordinates)


def gather(x, dim, index):
    return np.asarray(x)[_gather_coordinates(index, dim)]


def gather_backward(grad, input_shape, dim, index):
    out = np.zeros(input_shape, np.float64)
    np.add.at(out, _gather_coordinates(index, dim), np.asarray(grad, np.float64))
    return out


# ------------------------------------------------------------------ tanh ---
# (activation family; BERT's pooler)


def tanh(x):
    """numpy's float64 tanh: correctly saturating, odd, accurate near 0."""
    return np.tanh(np.asarray(x, np.float64))


def tanh_derivative(x):
    """tanh'(x) = sech(x)^2 = 1 / cosh(x)^2, never 1 - tanh(x)^2, which
    cancels to noise (and to 0) in the tails. cosh overflows to inf past
    |x| ~ 710, giving the limit 0."""
    x = np.asarray(x, np.float64)
    with np.errstate(over="ignore"):
        return 1.0 / np.cosh(x) ** 2


# ---------------------------------------------------------------- sampling --


def filtered_probabilities(logits, temperature=1.0, top_k=None, top_p=None, repetition_penalty=1.0, seen=None):
    """float64 probabilities of the next token for each row of logits [B, V]
    after the repetition penalty (CTRL: a seen token's positive logit divided
    by the penalty, a negative one multiplied), temperature, top-k and top-p
    (the smallest set of most probable tokens reaching p; among equal
    probabilities the lower id first), renormalized. temperature 0: one-hot
    on the argmax (the lower id among equals)."""
    z = np.array(logits, np.float64)
    if seen is not None and repetition_penalty != 1.0:
        z = np.where(seen, np.where(z > 0, z / repetition_penalty, z * repetition_penalty), z)
    out = np.zeros_like(z)
    for b, row in enumerate(z):
        if temperature == 0:
            out[b, np.argmax(row)] = 1.0
            continue
        # most probable first, the lower id first among equals
        order = np.lexsort((np.arange(row.size), -row))
        order = order[np.isfinite(row[order])]
        if top_k is not None:
            order = order[:top_k]
        weights = np.exp((row[order] - row[order].max()) / temperature)
        p = weights / weights.sum()
        if top_p is not None:
            kept = int(np.searchsorted(np.cumsum(p), top_p)) + 1  # the first prefix whose sum reaches top_p
            order, p = order[:kept], p[:kept] / p[:kept].sum()
        out[b, order] = p
    return out
