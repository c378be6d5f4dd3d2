// Softmax and log-softmax of scale * x over the rows of x[N, C], written once
// over a Vec and compiled per ISA (softmax.cpp for the generic build,
// avx2/softmax_avx2.cpp, avx512/softmax_avx512.cpp). Include a vec_<isa>.h first.
//
// Stability: every row is shifted by its maximum m before exponentiating, so
// each exponent is <= 0 and the largest term is e^0 = 1; the sum lies in
// [1, C] and neither overflows nor underflows, whatever the logits' size.
//
// -inf entries (masked logits) get probability 0. A row whose entries are all
// -inf gives softmax 0 and log_softmax -inf (not the NaN of -inf - -inf): such
// a row is shifted by 0 instead of by its max, its sum of exponentials is 0,
// and that case is written out explicitly. NaN anywhere in a row makes the
// whole row NaN, as in PyTorch.
//
// Scalar logarithms use __builtin_logf rather than std::log: std::log(float)
// is an inline function, and an out-of-line copy of it compiled in an ISA
// translation unit could be picked by the linker for baseline code.
#pragma once

#include <cstdint>

#include "cpu/vec/vec_math.h"

namespace attnkit::cpu::softmax_kernels {

constexpr float kNegativeInfinity = -__builtin_inff();

// The vector at x + i holding the `rest` < V::width last elements of a row,
// its missing lanes set to `fill`.
template <class V>
inline V load_tail(const float* x, int rest, float fill) {
  return select(V::first_lanes(rest), V::load_partial(x, rest), V::broadcast(fill));
}

template <class V>
inline float row_max(const float* x, std::int64_t n) {
  V m = V::broadcast(kNegativeInfinity);
  std::int64_t i = 0;
  for (; i + V::width <= n; i += V::width) m = max(V::load(x + i), m);
  if (i < n) m = max(load_tail<V>(x + i, int(n - i), kNegativeInfinity), m);
  return reduce_max(m);
}

// The shift of a row: scale * max (scale > 0, so it is the max of scale * x,
// rounded as that element is), or 0 for a row of -inf (see above).
template <class V>
inline float row_shift(const float* x, std::int64_t n, float scale) {
  const float m = row_max<V>(x, n);
  return m == kNegativeInfinity ? 0.0f : scale * m;
}

// sum_i exp(scale * x[i] - shift); when y is not null, the terms are stored
// there too. scale * x - shift is one fused operation (exact before the final
// rounding), which keeps the exponent's error at one rounding.
template <class V>
inline float sum_exponentials(float* y, const float* x, std::int64_t n, float scale, float shift) {
  const V s = V::broadcast(scale);
  const V minus_shift = V::broadcast(-shift);
  V sum = V::broadcast(0.0f);
  std::int64_t i = 0;
  for (; i + V::width <= n; i += V::width) {
    const V e = vec_math::exp(fma(V::load(x + i), s, minus_shift));
    if (y) e.store(y + i);
    sum = sum + e;
  }
  if (i < n) {
    const int rest = int(n - i);
    const V e = vec_math::exp(fma(load_tail<V>(x + i, rest, kNegativeInfinity), s, minus_shift));
    if (y) e.store_partial(y + i, rest);
    sum = sum + e;
  }
  return reduce_sum(sum);
}

// y[i] = exp(scale * x[i] - shift) / sum, over one row of n.
template <class V>
inline void softmax_forward_row(float* y, const float* x, std::int64_t n, float scale) {
  const float shift = row_shift<V>(x, n, scale);
  const float sum = sum_exponentials<V>(y, x, n, scale, shift);
  // A row of -inf: every term is 0 and y already holds the answer.
  if (sum == 0.0f) return;
  const V divisor = V::broadcast(sum);
  std::int64_t i = 0;
  for (; i + V::width <= n; i += V::width) (V::load(y + i) / divisor).store(y + i);
  if (i < n) {
    const int rest = int(n - i);
    (V::load_partial(y + i, rest) / divisor).store_partial(y + i, rest);
  }
}

// y[i] = (scale * x[i] - shift) - log(sum), over one row of n.
template <class V>
inline void log_softmax_forward_row(float* y, const float* x, std::int64_t n, float scale) {
  const float shift = row_shift<V>(x, n, scale);
  const float sum = sum_exponentials<V>(nullptr, x, n, scale, shift);
  std::int64_t i = 0;
  if (sum == 0.0f) {  // a row of -inf
    const V minus_infinity = V::broadcast(kNegativeInfinity);
    for (; i + V::width <= n; i += V::width) minus_infinity.store(y + i);
    if (i < n) minus_infinity.store_partial(y + i, int(n - i));
    return;
  }
  const V s = V::broadcast(scale);
  const V minus_shift = V::broadcast(-shift);
  const V log_sum = V::broadcast(__builtin_logf(sum));
  for (; i + V::width <= n; i += V::width)
    (fma(V::load(x + i), s, minus_shift) - log_sum).store(y + i);
  if (i < n) {
    const int rest = int(n - i);
    (fma(V::load_partial(x + i, rest), s, minus_shift) - log_sum).store_partial(y + i, rest);
  }
}

// d/dx of softmax(scale * x) from its output y:
//   dx[i] = scale * y[i] * (dy[i] - sum_j dy[j] y[j]).
// Rows of -inf have y = 0 and get dx = 0.
template <class V>
inline void softmax_backward_row(float* dx, const float* dy, const float* y, std::int64_t n,
                                 float scale) {
  V dot = V::broadcast(0.0f);
  std::int64_t i = 0;
  for (; i + V::width <= n; i += V::width) dot = fma(V::load(dy + i), V::load(y + i), dot);
  if (i < n) {
    const int rest = int(n - i);
    dot = fma(V::load_partial(dy + i, rest), V::load_partial(y + i, rest), dot);
  }
  const V total = V::broadcast(reduce_sum(dot));
  const V s = V::broadcast(scale);
  for (i = 0; i + V::width <= n; i += V::width)
    (V::load(y + i) * (V::load(dy + i) - total) * s).store(dx + i);
  if (i < n) {
    const int rest = int(n - i);
    (V::load_partial(y + i, rest) * (V::load_partial(dy + i, rest) - total) * s)
        .store_partial(dx + i, rest);
  }
}

// d/dx of log_softmax(scale * x) from its output y:
//   dx[i] = scale * (dy[i] - exp(y[i]) * sum_j dy[j]).
// The same formula holds on rows of -inf (exp(-inf) = 0, so dx = scale * dy).
template <class V>
inline void log_softmax_backward_row(float* dx, const float* dy, const float* y, std::int64_t n,
                                     float scale) {
  V sum = V::broadcast(0.0f);
  std::int64_t i = 0;
  for (; i + V::width <= n; i += V::width) sum = sum + V::load(dy + i);
  if (i < n) sum = sum + V::load_partial(dy + i, int(n - i));
  const V minus_total = V::broadcast(-reduce_sum(sum));
  const V s = V::broadcast(scale);
  for (i = 0; i + V::width <= n; i += V::width)
    (fma(vec_math::exp(V::load(y + i)), minus_total, V::load(dy + i)) * s).store(dx + i);
  if (i < n) {
    const int rest = int(n - i);
    (fma(vec_math::exp(V::load_partial(y + i, rest)), minus_total, V::load_partial(dy + i, rest)) * s)
        .store_partial(dx + i, rest);
  }
}

// The per-ISA entry points: rows [0, rows) of width n, single-threaded.
template <class V>
inline void softmax_forward(float* y, const float* x, std::int64_t rows, std::int64_t n, float scale,
                            bool log) {
  for (std::int64_t r = 0; r < rows; ++r) {
    if (log)
      log_softmax_forward_row<V>(y + r * n, x + r * n, n, scale);
    else
      softmax_forward_row<V>(y + r * n, x + r * n, n, scale);
  }
}

template <class V>
inline void softmax_backward(float* dx, const float* dy, const float* y, std::int64_t rows,
                             std::int64_t n, float scale, bool log) {
  for (std::int64_t r = 0; r < rows; ++r) {
    if (log)
      log_softmax_backward_row<V>(dx + r * n, dy + r * n, y + r * n, n, scale);
    else
      softmax_backward_row<V>(dx + r * n, dy + r * n, y + r * n, n, scale);
  }
}

}  // namespace attnkit::cpu::softmax_kernels
