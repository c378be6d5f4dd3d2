// GELU over a Vec, written once and compiled per ISA (activation.cpp for the
// generic build, avx2/activation_avx2.cpp, avx512/activation_avx512.cpp).
// Include a vec_<isa>.h first.
//
//   exact:  gelu(x) = x * Phi(x),  Phi(x) = erfc(-x / sqrt 2) / 2
//   tanh:   gelu(x) = x * (1 + tanh(u)) / 2 = x * sigmoid(2u),
//           u = sqrt(2/pi) * (x + 0.044715 x^3)
//
// Both are evaluated in forms that keep relative accuracy in the negative
// tail, where gelu(x) is tiny: Phi through erfc (never 1 + erf), and the tanh
// form as a sigmoid (never 1 + tanh). Beyond |x| > 20 every term has underflowed
// and the results are the limits, which also makes gelu(+-inf) and its
// gradient come out as the math says (inf, 0; 1, 0) instead of inf * 0 = NaN.
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
  return fma(fma(V::broadcast(-0.37469205f), t, V::broadcast(1.7800238f)), t,
             V::broadcast(0.88346654f));
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
//   in t moves erfc 2.26 times as much. Both residuals are exact (product_error),
//   so delta = ln(t_exact / t) is known to first order and added to the
//   exponent, scaled by the sensitivity above.
template <class V>
inline NormalTail<V> normal_tail(V x, bool with_density) {
  const V one = V::broadcast(1.0f);
  const V half = V::broadcast(0.5f);
  const V magnitude = abs(x);
  // 1 + z/2 = 1 + |x| / (2 sqrt 2): one rounding, not two.
  const V half_inv_sqrt2 = V::broadcast(0.5f * kInvSqrt2);
  const V denominator = fma(magnitude, half_inv_sqrt2, one);
  const V t = one / denominator;
  // denominator_error = (1 + |x| k) - denominator (denominator - 1 is exact:
  // denominator >= 1 and its ulp is at most 1). t_exact = 1 / (denominator +
  // denominator_error), so ln(t_exact / t) = -(t denominator - 1) -
  // t denominator_error to first order.
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
  out.q = half * t *
          vec_math::exp_sum(minus_half_square, erfc_exponent_polynomial(t) + small_terms);
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
  const V du_dx = V::broadcast(kSqrt2OverPi) *
                  fma(V::broadcast(3.0f * kTanhCubic), x * x, one);
  const V derivative = fma(V::broadcast(2.0f) * x * du_dx, s_one_minus_s, terms.s);
  const V zero = V::broadcast(0.0f);
  const V saturated = select(greater(x, zero), one, zero);
  return select(greater(abs(x), V::broadcast(kSaturation)), saturated, derivative);
}

// y[i] = gelu(x[i]) for i < n.
template <class V>
inline void gelu_forward(float* y, const float* x, std::int64_t n, bool tanh_form) {
  std::int64_t i = 0;
  if (tanh_form) {
    for (; i + V::width <= n; i += V::width) gelu_tanh(V::load(x + i)).store(y + i);
    if (i < n) gelu_tanh(V::load_partial(x + i, int(n - i))).store_partial(y + i, int(n - i));
  } else {
    for (; i + V::width <= n; i += V::width) gelu_exact(V::load(x + i)).store(y + i);
    if (i < n) gelu_exact(V::load_partial(x + i, int(n - i))).store_partial(y + i, int(n - i));
  }
}

// dx[i] = dy[i] * gelu'(x[i]) for i < n.
template <class V>
inline void gelu_backward(float* dx, const float* dy, const float* x, std::int64_t n,
                          bool tanh_form) {
  std::int64_t i = 0;
  if (tanh_form) {
    for (; i + V::width <= n; i += V::width)
      (V::load(dy + i) * gelu_tanh_derivative(V::load(x + i))).store(dx + i);
    if (i < n) {
      const int rest = int(n - i);
      (V::load_partial(dy + i, rest) * gelu_tanh_derivative(V::load_partial(x + i, rest)))
          .store_partial(dx + i, rest);
    }
  } else {
    for (; i + V::width <= n; i += V::width)
      (V::load(dy + i) * gelu_exact_derivative(V::load(x + i))).store(dx + i);
    if (i < n) {
      const int rest = int(n - i);
      (V::load_partial(dy + i, rest) * gelu_exact_derivative(V::load_partial(x + i, rest)))
          .store_partial(dx + i, rest);
    }
  }
}

}  // namespace attnkit::cpu::activation_kernels
