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

// For the exact form: the lower-tail probability q = Phi(-|x|), and the
// Gaussian density factor exp(-x^2/2) (computed from the exact square).
template <class V>
struct NormalTail {
  V q;
  V density;  // exp(-x^2/2); only filled when asked for
};

template <class V>
inline NormalTail<V> normal_tail(V x, bool with_density) {
  const V half = V::broadcast(0.5f);
  const V z = abs(x) * V::broadcast(kInvSqrt2);
  const V t = V::broadcast(1.0f) / fma(z, half, V::broadcast(1.0f));
  // x^2 = square + square_error exactly, so -z^2 = -(square + error)/2 exactly.
  const V square = x * x;
  const V square_error = product_error(x, x, square);
  const V minus_half_square = -(square * half);
  const V minus_half_error = -(square_error * half);
  NormalTail<V> out;
  out.q = half * t *
          vec_math::exp_sum(minus_half_square,
                            vec_math::erfc_fit_polynomial(t) + minus_half_error);
  if (with_density) out.density = vec_math::exp_sum(minus_half_square, minus_half_error);
  return out;
}

template <class V>
inline V gelu_exact(V x) {
  const NormalTail<V> tail = normal_tail(x, false);
  const V zero = V::broadcast(0.0f);
  const V cdf = select(greater_equal(x, zero), V::broadcast(1.0f) - tail.q, tail.q);
  const V saturated = select(greater(x, zero), x, V::broadcast(-0.0f));
  return select(greater(abs(x), V::broadcast(kSaturation)), saturated, x * cdf);
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
