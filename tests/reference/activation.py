"""float64 references: GELU (exact and tanh), ReLU, SiLU, tanh and SwiGLU."""

from __future__ import annotations

import math

import numpy as np

_erfc = np.frompyfunc(math.erfc, 1, 1)


def erfc(x):
    # np.asarray: frompyfunc gives a Python float for 0-d input.
    return np.asarray(_erfc(np.asarray(x, np.float64)), dtype=np.float64)


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
