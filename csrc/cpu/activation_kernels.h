// The activations over a Vec, written once and compiled per ISA
// (isa/activation.cpp). Include a vec_<isa>.h first.
//
//   exact:  gelu(x) = x * Phi(x),  Phi(x) = erfc(-x / sqrt 2) / 2
//   tanh:   gelu(x) = x * (1 + tanh(u)) / 2 = x * sigmoid(2u),
//           u = sqrt(2/pi) * (x + 0.044715 x^3)
//   relu(x) = max(x, 0)
//   silu(x) = x * sigmoid(x)
//   swiglu(x) = silu(gate) * up, gate and up the two halves of x's last dim
//   tanh(x) = (1 - e) / (1 + e), e = exp(-2|x|), with the sign of x
//
// All are evaluated in forms that keep relative accuracy in the negative
// tail, where the result is tiny: Phi through erfc (never 1 + erf), the
// sigmoids from exp(-|.|) (never 1 + tanh, never 1 + exp(-x) for x < 0).
// Where every term has underflowed or overflowed the results are the limits,
// which also makes the infinities come out as the math says (gelu(-inf) = 0,
// gelu'(+inf) = 1, ...) instead of inf * 0 = NaN. NaN stays NaN.
#pragma once

#include <cstdint>

#include "cpu/vec/vec_math.h"

namespace attnkit::cpu::activation_kernels {

constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;
constexpr float kSqrt2OverPi = 0.79788456080286536f;
constexpr float kTanhCubic = 0.044715f;
constexpr float kSaturation = 20.0f;

// The exact form needs q = Phi(-|x|) = erfc(z)/2, z = |x|/sqrt 2. We use
// Numerical Recipes' shape for erfc,
//   erfc(z) = t exp(-z^2 + P(t)),  t = 1/(1 + z/2),
// with our own P: a least-squares fit, reweighted toward minimax (Lawson), of
// P(t) = ln(erfc(z) e^(z^2) / t) on t in [1/(1 + 20/(2 sqrt 2)), 1] (|x| <= 20,
// the saturation point), in powers of t - 0.5625 (smaller coefficients than
// powers of t, so Horner loses less), each coefficient rounded to float and
// the rest refit. Its error is 4.3e-8 in exact arithmetic and 1.2e-7 evaluated
// in float, where Numerical Recipes' published fit alone is off by 1.2e-7.
template <class V>
inline V erfc_exponent_polynomial(V t) {
  const V u = t - V::broadcast(0.5625f);
  V p = V::broadcast(-0.12651044f);
  p = fma(p, u, V::broadcast(0.1677491f));
  p = fma(p, u, V::broadcast(0.107515626f));
  p = fma(p, u, V::broadcast(-0.26417723f));
  p = fma(p, u, V::broadcast(-0.014985718f));
  p = fma(p, u, V::broadcast(0.29929164f));
  p = fma(p, u, V::broadcast(-0.06569669f));
  p = fma(p, u, V::broadcast(-0.40321335f));
  p = fma(p, u, V::broadcast(0.11603583f));
  p = fma(p, u, V::broadcast(1.3644294f));
  p = fma(p, u, V::broadcast(-0.58706766f));
  return p;
}

// d ln(t exp(P(t))) / d ln t = 1 + t P'(t): how a relative error in t moves
// ln erfc. It lies between 1.14 and 2.26; this quadratic is within 0.04 of
// it, plenty for a first-order correction of a rounding error.
template <class V>
inline V erfc_sensitivity_to_t(V t) {
  return fma(fma(V::broadcast(-0.37469205f), t, V::broadcast(1.7800238f)), t, V::broadcast(0.88346654f));
}

// For the exact form: the lower-tail probability q = Phi(-|x|), and the
// Gaussian density factor exp(-x^2/2).
template <class V>
struct NormalTail {
  V q;
  V density;  // exp(-x^2/2); only filled when asked for
};

// Where float rounding would cost accuracy, it is undone:
// - x^2 = square + square_error exactly, so the Gaussian factor sees the exact
//   -x^2/2 (its rounding would be amplified x^2-fold in the tail).
// - t is rounded twice (1 + z/2, then the division), and near z = 0 an error
//   in t moves erfc 2.26 times as much. product_error gives both rounding
//   errors, so delta = ln(t_exact / t) is known to first order and is added to
//   the exponent, scaled by the sensitivity above.
template <class V>
inline NormalTail<V> normal_tail(V x, bool with_density) {
  const V one = V::broadcast(1.0f);
  const V half = V::broadcast(0.5f);
  const V magnitude = abs(x);
  // 1 + z/2 = 1 + |x| / (2 sqrt 2): one rounding, not two.
  const V half_inv_sqrt2 = V::broadcast(0.5f * kInvSqrt2);
  const V denominator = fma(magnitude, half_inv_sqrt2, one);
  const V t = one / denominator;
  // denominator_error = (1 + |x| k) - denominator, through denominator - 1,
  // which is exact for 1 <= denominator < 2^24 (|x| beyond 20 is saturated
  // below anyway). t_exact = 1 / (denominator + denominator_error), so
  // ln(t_exact / t) = -(t denominator - 1) - t denominator_error to first order.
  const V denominator_error = product_error(magnitude, half_inv_sqrt2, denominator - one);
  const V t_residual = product_error(t, denominator, one);
  const V delta = -fma(t, denominator_error, t_residual);

  const V square = x * x;
  const V square_error = product_error(x, x, square);
  const V minus_half_square = -(square * half);
  const V minus_half_error = -(square_error * half);
  // The small terms are summed first, so the exponent's low part rounds once.
  const V small_terms = fma(erfc_sensitivity_to_t(t), delta, minus_half_error);
  NormalTail<V> out;
  out.q = half * t * vec_math::exp_sum(minus_half_square, erfc_exponent_polynomial(t) + small_terms);
  if (with_density) out.density = vec_math::exp_sum(minus_half_square, minus_half_error);
  return out;
}

template <class V>
inline V gelu_exact(V x) {
  const NormalTail<V> tail = normal_tail(x, false);
  const V zero = V::broadcast(0.0f);
  // x >= 0: x Phi(x) = x (1 - q) = x - x q, in one fused step.
  const V value = select(greater_equal(x, zero), fma(-x, tail.q, x), x * tail.q);
  const V saturated = select(greater(x, zero), x, V::broadcast(-0.0f));
  return select(greater(abs(x), V::broadcast(kSaturation)), saturated, value);
}

template <class V>
inline V gelu_exact_derivative(V x) {
  const NormalTail<V> tail = normal_tail(x, true);
  const V zero = V::broadcast(0.0f);
  const V cdf = select(greater_equal(x, zero), V::broadcast(1.0f) - tail.q, tail.q);
  const V derivative = fma(x * V::broadcast(kInvSqrt2Pi), tail.density, cdf);
  const V saturated = select(greater(x, zero), V::broadcast(1.0f), zero);
  return select(greater(abs(x), V::broadcast(kSaturation)), saturated, derivative);
}

// The tanh form through a = exp(-2|u|), which never overflows: with
// s = sigmoid(2u), s = 1/(1+a) for u >= 0 and a/(1+a) for u < 0, and in both
// cases s (1 - s) = a / (1+a)^2. (u has the sign of x.)
template <class V>
struct TanhFormTerms {
  V s;
  V a;
  V one_plus_a;
};

template <class V>
inline TanhFormTerms<V> tanh_form_terms(V x) {
  const V one = V::broadcast(1.0f);
  const V u = V::broadcast(kSqrt2OverPi) * fma(V::broadcast(kTanhCubic), x * x * x, x);
  const V a = vec_math::exp(abs(u) * V::broadcast(-2.0f));
  const V one_plus_a = one + a;
  const V s = select(greater_equal(x, V::broadcast(0.0f)), one, a) / one_plus_a;
  return {s, a, one_plus_a};
}

template <class V>
inline V gelu_tanh(V x) {
  const TanhFormTerms<V> terms = tanh_form_terms(x);
  const V saturated = select(greater(x, V::broadcast(0.0f)), x, V::broadcast(-0.0f));
  return select(greater(abs(x), V::broadcast(kSaturation)), saturated, x * terms.s);
}

template <class V>
inline V gelu_tanh_derivative(V x) {
  // d/dx [x s] = s + 2 x u' s (1 - s)
  const V one = V::broadcast(1.0f);
  const TanhFormTerms<V> terms = tanh_form_terms(x);
  const V s_one_minus_s = terms.a / (terms.one_plus_a * terms.one_plus_a);
  const V du_dx = V::broadcast(kSqrt2OverPi) * fma(V::broadcast(3.0f * kTanhCubic), x * x, one);
  const V derivative = fma(V::broadcast(2.0f) * x * du_dx, s_one_minus_s, terms.s);
  const V zero = V::broadcast(0.0f);
  const V saturated = select(greater(x, zero), one, zero);
  return select(greater(abs(x), V::broadcast(kSaturation)), saturated, derivative);
}

// ------------------------------------------------------------ ReLU ---

template <class V>
inline V relu(V x) {
  return max(V::broadcast(0.0f), x);  // constant first: max(0, NaN) is NaN
}

// dy * relu'(x): relu' is 1 for x > 0 and 0 for x <= 0 (at 0, PyTorch's
// choice); at NaN it is NaN.
template <class V>
inline V relu_backward(V dy, V x) {
  const V zero = V::broadcast(0.0f);
  return select(greater(x, zero), dy, select(greater_equal(zero, x), zero, x));
}

// ------------------------------------------------------------ SiLU ---

// Beyond this magnitude silu and silu' equal their limits in float (x e^x
// underflows below -104; x e^-x is lost next to 1 above 22). The limits are
// selected explicitly for the infinities, where the formulas give inf * 0.
constexpr float kSiluSaturation = 128.0f;

// sigmoid(x) through a = exp(-|x|), which never overflows: s = 1/(1+a) for
// x >= 0 and a/(1+a) for x < 0, both with full relative accuracy, and
// 1 - s is the other one.
template <class V>
struct SigmoidTerms {
  V s;
  V one_minus_s;
};

template <class V>
inline SigmoidTerms<V> sigmoid_terms(V x) {
  const V one = V::broadcast(1.0f);
  const V a = vec_math::exp(-abs(x));
  const V reciprocal = one / (one + a);
  const V small = a * reciprocal;
  const auto nonnegative = greater_equal(x, V::broadcast(0.0f));
  return {select(nonnegative, reciprocal, small), select(nonnegative, small, reciprocal)};
}

template <class V>
struct SiluTerms {
  V value;       // silu(x)
  V derivative;  // silu'(x)
};

// silu and silu' from one exp: silu = x s, silu' = s + x s (1 - s) =
// s (1 + x (1 - s)).
template <class V>
inline SiluTerms<V> silu_terms(V x) {
  const V one = V::broadcast(1.0f);
  const V zero = V::broadcast(0.0f);
  const SigmoidTerms<V> terms = sigmoid_terms(x);
  const auto saturated = greater(abs(x), V::broadcast(kSiluSaturation));
  // Only -inf needs its limit in the value (-inf * 0); +inf * 1 is inf.
  const V value = select(less(x, V::broadcast(-kSiluSaturation)), V::broadcast(-0.0f), x * terms.s);
  const V derivative = terms.s * fma(x, terms.one_minus_s, one);
  return {value, select(saturated, select(greater(x, zero), one, zero), derivative)};
}

template <class V>
inline V silu(V x) {
  return silu_terms(x).value;
}

template <class V>
inline V silu_derivative(V x) {
  return silu_terms(x).derivative;
}

// ------------------------------------------------------------ tanh ---

// Below this magnitude tanh comes from an odd polynomial; above it, from
// e = exp(-2|x|). At |x| = 0.55, tanh is just above 1/2 (ln 3 / 2 = 0.5493),
// so 1 - e loses less than one bit to cancellation, and the polynomial's
// range stays small enough for five coefficients.
constexpr float kTanhPolynomialLimit = 0.55f;
// Below 2^-12, tanh(x) = x (1 - x^2/3 + ...) is within x^2/3 < 2^-25 of x
// relative, so it rounds to x: x is returned as is, which also keeps the sign
// of -0 (x + x^3 P would give +0).
constexpr float kTanhIdentityLimit = 0x1p-12f;

// tanh(x) = x + x^3 P(x^2) for |x| <= 0.55. P is our own fit of
// (tanh(x) - x) / x^3 in s = x^2: least squares weighted by the error it makes
// in tanh relative to tanh itself, reweighted toward minimax (Lawson), each
// coefficient rounded to float and the rest refit. Its error in exact
// arithmetic is 0.02 units of 2^-24 relative to tanh; the x^3 P term is at
// most a tenth of the result, so its float rounding costs little too.
template <class V>
inline V tanh_polynomial(V s) {
  V p = V::broadcast(-0.0062428489f);
  p = fma(p, s, V::broadcast(0.021050714f));
  p = fma(p, s, V::broadcast(-0.053847548f));
  p = fma(p, s, V::broadcast(0.13332544f));
  p = fma(p, s, V::broadcast(-0.33333316f));
  return p;
}

template <class V>
struct TanhTerms {
  V value;       // tanh(x)
  V derivative;  // tanh'(x) = 1 - tanh(x)^2
};

// tanh and tanh' in forms without cancellation:
// - |x| <= 0.55: tanh = x + x^3 P(x^2) (no 1 - 2/(e^2x + 1), which loses
//   all digits near 0), and 1 - tanh^2 >= 0.75 has nothing to cancel.
// - above: e = exp(-2|x|) in (0, 1/3] never overflows (2|x| is exact), and
//   tanh = (1 - e)/(1 + e), tanh' = (1 - tanh)(1 + tanh) = 4e / (1 + e)^2,
//   which keeps full relative accuracy in the tail where 1 - tanh^2 would be
//   0 or noise. At the infinities e = 0 gives the limits 1 and 0; NaN stays NaN.
template <class V>
inline TanhTerms<V> tanh_terms(V x) {
  const V one = V::broadcast(1.0f);
  const V magnitude = abs(x);

  const V square = x * x;
  const V small_value =
      select(less(magnitude, V::broadcast(kTanhIdentityLimit)), x, fma(x * square, tanh_polynomial(square), x));
  const V small_derivative = fma(-small_value, small_value, one);

  // 1 - e and 1 + e are rounded; their rounding errors are exact (1 - e and
  // 1 + e lie in [2/3, 4/3], so one minus them is exact) and are divided out
  // to first order below, which takes about an ulp off both results.
  const V e = vec_math::exp(magnitude * V::broadcast(-2.0f));
  const V one_minus_e = one - e;
  const V one_minus_e_error = (one - one_minus_e) - e;
  const V one_plus_e = one + e;
  const V one_plus_e_error = e - (one_plus_e - one);
  // (n + dn) / (d + dd) = q + (dn - q dd) / d to first order, q = n / d.
  const V ratio = one_minus_e / one_plus_e;
  const V large_magnitude = ratio + fma(-ratio, one_plus_e_error, one_minus_e_error) / one_plus_e;
  const V large_value = select(less(x, V::broadcast(0.0f)), -large_magnitude, large_magnitude);
  // (1 + e)^2 = square_of_sum + square_low to first order.
  const V square_of_sum = one_plus_e * one_plus_e;
  const V square_low =
      fma(one_plus_e + one_plus_e, one_plus_e_error, product_error(one_plus_e, one_plus_e, square_of_sum));
  const V quotient = (V::broadcast(4.0f) * e) / square_of_sum;
  const V large_derivative = fma(-quotient, square_low / square_of_sum, quotient);

  const auto small = less(magnitude, V::broadcast(kTanhPolynomialLimit));
  return {select(small, small_value, large_value), select(small, small_derivative, large_derivative)};
}

template <class V>
inline V tanh(V x) {
  return tanh_terms(x).value;
}

template <class V>
inline V tanh_derivative(V x) {
  return tanh_terms(x).derivative;
}

// ------------------------------------------------------------- loops ---

// y[i] = f(x[i]) for i < n: whole vectors, then one partial vector.
template <class V, class Function>
inline void map(float* y, const float* x, std::int64_t n, const Function& f) {
  std::int64_t i = 0;
  for (; i + V::width <= n; i += V::width) f(V::load(x + i)).store(y + i);
  if (i < n) f(V::load_partial(x + i, int(n - i))).store_partial(y + i, int(n - i));
}

// out[i] = f(a[i], b[i]) for i < n.
template <class V, class Function>
inline void map(float* out, const float* a, const float* b, std::int64_t n, const Function& f) {
  std::int64_t i = 0;
  for (; i + V::width <= n; i += V::width) f(V::load(a + i), V::load(b + i)).store(out + i);
  if (i < n) {
    const int rest = int(n - i);
    f(V::load_partial(a + i, rest), V::load_partial(b + i, rest)).store_partial(out + i, rest);
  }
}

// y[i] = gelu(x[i]) for i < n.
template <class V>
inline void gelu_forward(float* y, const float* x, std::int64_t n, bool tanh_form) {
  if (tanh_form) {
    map<V>(y, x, n, [](V v) { return gelu_tanh(v); });
  } else {
    map<V>(y, x, n, [](V v) { return gelu_exact(v); });
  }
}

// dx[i] = dy[i] * gelu'(x[i]) for i < n.
template <class V>
inline void gelu_backward(float* dx, const float* dy, const float* x, std::int64_t n, bool tanh_form) {
  if (tanh_form) {
    map<V>(dx, dy, x, n, [](V g, V v) { return g * gelu_tanh_derivative(v); });
  } else {
    map<V>(dx, dy, x, n, [](V g, V v) { return g * gelu_exact_derivative(v); });
  }
}

template <class V>
inline void relu_forward(float* y, const float* x, std::int64_t n) {
  map<V>(y, x, n, [](V v) { return relu(v); });
}

template <class V>
inline void relu_backward(float* dx, const float* dy, const float* x, std::int64_t n) {
  map<V>(dx, dy, x, n, [](V g, V v) { return relu_backward(g, v); });
}

template <class V>
inline void silu_forward(float* y, const float* x, std::int64_t n) {
  map<V>(y, x, n, [](V v) { return silu(v); });
}

template <class V>
inline void silu_backward(float* dx, const float* dy, const float* x, std::int64_t n) {
  map<V>(dx, dy, x, n, [](V g, V v) { return g * silu_derivative(v); });
}

template <class V>
inline void tanh_forward(float* y, const float* x, std::int64_t n) {
  map<V>(y, x, n, [](V v) { return tanh(v); });
}

template <class V>
inline void tanh_backward(float* dx, const float* dy, const float* x, std::int64_t n) {
  map<V>(dx, dy, x, n, [](V g, V v) { return g * tanh_derivative(v); });
}

// SwiGLU on a tile of `rows` rows and `columns` columns of the output, one
// pass over memory. Rows of y (and dy) are `hidden` floats apart, rows of x
// (and dx) 2 * hidden: the gate half, then the up half.
//   y[r, j] = silu(x[r, j]) * x[r, hidden + j]
template <class V>
inline void swiglu_forward(float* y, const float* x, std::int64_t rows, std::int64_t columns, std::int64_t hidden) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* gate = x + r * 2 * hidden;
    map<V>(y + r * hidden, gate, gate + hidden, columns, [](V g, V u) { return silu(g) * u; });
  }
}

//   dx[r, j]          = dy[r, j] * up * silu'(gate)
//   dx[r, hidden + j] = dy[r, j] * silu(gate)
template <class V>
inline void swiglu_backward(float* dx, const float* dy, const float* x, std::int64_t rows, std::int64_t columns,
                            std::int64_t hidden) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* gate = x + r * 2 * hidden;
    const float* up = gate + hidden;
    const float* grad = dy + r * hidden;
    float* grad_gate = dx + r * 2 * hidden;
    float* grad_up = grad_gate + hidden;
    std::int64_t j = 0;
    for (; j + V::width <= columns; j += V::width) {
      const SiluTerms<V> terms = silu_terms(V::load(gate + j));
      const V g = V::load(grad + j);
      (g * V::load(up + j) * terms.derivative).store(grad_gate + j);
      (g * terms.value).store(grad_up + j);
    }
    if (j < columns) {
      const int rest = int(columns - j);
      const SiluTerms<V> terms = silu_terms(V::load_partial(gate + j, rest));
      const V g = V::load_partial(grad + j, rest);
      (g * V::load_partial(up + j, rest) * terms.derivative).store_partial(grad_gate + j, rest);
      (g * terms.value).store_partial(grad_up + j, rest);
    }
  }
}

}  // namespace attnkit::cpu::activation_kernels
