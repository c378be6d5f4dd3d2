// Softmax and log-softmax of scale * x over the rows of x[N, C], written once
// over a Vec and compiled once per ISA into that ISA's SoftmaxKernels table
// (isa/softmax.cpp). Include a vec_<isa>.h first.
//
// Stability: every row is shifted by its maximum m before exponentiating, so
// each exponent is <= 0 and the largest term is e^0 = 1; the sum lies in
// [1, C] and neither overflows nor underflows, whatever the logits' size.
//
// The shift comes before the scale: the exponent is (x - m) * scale, never
// scale * x - scale * m. With a large scale (1 / temperature near 0),
// scale * m is a large number whose rounding error alone is many units, and
// it overflows float32 for large enough logits: exponents of +-thousands gave
// NaN or a row of zeros where the answer is one-hot. x - m is exact where it
// matters (near the max, Sterbenz) and is rounded at most once elsewhere, so
// the exponent carries at most two roundings of its own size: never more than
// the plain computation, and much less near the max when |m| is large.
//
// -inf entries (masked logits) get probability 0. A row whose entries are all
// -inf gives softmax 0 and log_softmax -inf (not the NaN of -inf - -inf): such
// a row is shifted by 0 instead of by its max, its sum of exponentials is 0,
// and that case is written out explicitly. NaN anywhere in a row makes the
// whole row NaN, as in PyTorch.
//
// Row sums are compensated (row_reduction.h).
//
// Scalar logarithms use __builtin_log rather than std::log: std::log is an
// inline function, and an out-of-line copy of it compiled in an ISA
// translation unit could be picked by the linker for baseline code.
#pragma once

#include <cstdint>

#include "cpu/row_reduction.h"
#include "cpu/vec/vec_math.h"

namespace attnkit::cpu::softmax_kernels {

using row_reduction::CompensatedSum;
using row_reduction::DoubleFloat;
using row_reduction::lanes_at;
using row_reduction::load_n;
using row_reduction::multiply;
using row_reduction::split;
using row_reduction::store_n;

constexpr float kNegativeInfinity = -__builtin_inff();

template <class V>
inline float row_max(const float* x, std::int64_t n) {
  const V minus_infinity = V::broadcast(kNegativeInfinity);
  V m = minus_infinity;
  for (std::int64_t i = 0; i < n; i += V::width) {
    const int lanes = lanes_at<V>(i, n);
    m = max(select(V::first_lanes(lanes), load_n<V>(x + i, lanes), minus_infinity), m);
  }
  return reduce_max(m);
}

// The shift of a row: its max, or 0 for a row of -inf (see above).
template <class V>
inline float row_shift(const float* x, std::int64_t n) {
  const float m = row_max<V>(x, n);
  return m == kNegativeInfinity ? 0.0f : m;
}

// The exponents (x - shift) * scale of a vector (see the top of this file).
template <class V>
inline V exponents(V x, V shift, V scale) {
  return (x - shift) * scale;
}

// sum_i exp((x[i] - shift) * scale); when y is not null, the terms are stored
// there too.
template <class V>
inline double sum_exponentials(float* y, const float* x, std::int64_t n, float scale, float shift) {
  const V s = V::broadcast(scale);
  const V m = V::broadcast(shift);
  const V zero = V::broadcast(0.0f);
  CompensatedSum<V> sum;
  for (std::int64_t i = 0; i < n; i += V::width) {
    const int lanes = lanes_at<V>(i, n);
    const V e = select(V::first_lanes(lanes), vec_math::exp(exponents(load_n<V>(x + i, lanes), m, s)), zero);
    if (y) store_n(e, y + i, lanes);
    sum.add(e);
  }
  return sum.total();
}

// y[i] = exp((x[i] - shift) * scale) / sum, over one row of n. The division is
// a multiplication by 1 / sum held as a DoubleFloat: as exact as dividing
// (one rounding), at the cost of three multiply-adds instead of a division.
template <class V>
inline void softmax_forward_row(float* y, const float* x, std::int64_t n, float scale) {
  const float shift = row_shift<V>(x, n);
  const double sum = sum_exponentials<V>(y, x, n, scale, shift);
  // A row of -inf: every term is 0 and y already holds the answer.
  if (sum == 0.0) return;
  const DoubleFloat<V> reciprocal = split<V>(1.0 / sum);
  for (std::int64_t i = 0; i < n; i += V::width) {
    const int lanes = lanes_at<V>(i, n);
    store_n(multiply(load_n<V>(y + i, lanes), reciprocal), y + i, lanes);
  }
}

// y[i] = (x[i] - shift) * scale - log(sum), over one row of n.
template <class V>
inline void log_softmax_forward_row(float* y, const float* x, std::int64_t n, float scale) {
  const float shift = row_shift<V>(x, n);
  const double sum = sum_exponentials<V>(nullptr, x, n, scale, shift);
  if (sum == 0.0) {  // a row of -inf
    const V minus_infinity = V::broadcast(kNegativeInfinity);
    for (std::int64_t i = 0; i < n; i += V::width) store_n(minus_infinity, y + i, lanes_at<V>(i, n));
    return;
  }
  const V s = V::broadcast(scale);
  const V m = V::broadcast(shift);
  const V log_sum = V::broadcast(static_cast<float>(__builtin_log(sum)));
  for (std::int64_t i = 0; i < n; i += V::width) {
    const int lanes = lanes_at<V>(i, n);
    store_n(exponents(load_n<V>(x + i, lanes), m, s) - log_sum, y + i, lanes);
  }
}

// d/dx of softmax(scale * x) from its output y:
//   dx[i] = scale * y[i] * (dy[i] - sum_j dy[j] y[j]).
// Rows of -inf have y = 0 and get dx = 0. dy[i] - sum often cancels (the
// largest y weighs most in the sum), so the sum is applied as a DoubleFloat:
// its rounding would otherwise be magnified by the cancellation.
template <class V>
inline void softmax_backward_row(float* dx, const float* dy, const float* y, std::int64_t n, float scale) {
  CompensatedSum<V> dot;
  for (std::int64_t i = 0; i < n; i += V::width) {
    const int lanes = lanes_at<V>(i, n);
    dot.add_product(load_n<V>(dy + i, lanes), load_n<V>(y + i, lanes));
  }
  const DoubleFloat<V> total = split<V>(dot.total());
  const V s = V::broadcast(scale);
  for (std::int64_t i = 0; i < n; i += V::width) {
    const int lanes = lanes_at<V>(i, n);
    const V difference = (load_n<V>(dy + i, lanes) - total.high) - total.low;
    store_n(load_n<V>(y + i, lanes) * difference * s, dx + i, lanes);
  }
}

// d/dx of log_softmax(scale * x) from its output y:
//   dx[i] = scale * (dy[i] - exp(y[i]) * sum_j dy[j]).
// The same formula holds on rows of -inf (exp(-inf) = 0, so dx = scale * dy).
// The sum is a DoubleFloat and exp(y) times its high part is taken exactly,
// for the same reason as above.
template <class V>
inline void log_softmax_backward_row(float* dx, const float* dy, const float* y, std::int64_t n, float scale) {
  CompensatedSum<V> sum;
  for (std::int64_t i = 0; i < n; i += V::width) sum.add(load_n<V>(dy + i, lanes_at<V>(i, n)));
  const DoubleFloat<V> total = split<V>(sum.total());
  const V s = V::broadcast(scale);
  for (std::int64_t i = 0; i < n; i += V::width) {
    const int lanes = lanes_at<V>(i, n);
    const V p = vec_math::exp(load_n<V>(y + i, lanes));
    const V p_total = p * total.high;
    const V difference =
        (load_n<V>(dy + i, lanes) - p_total) - fma(p, total.low, product_error(p, total.high, p_total));
    store_n(difference * s, dx + i, lanes);
  }
}

// The per-ISA entry points: rows [0, rows) of width n, single-threaded.
template <class V>
inline void softmax_forward(float* y, const float* x, std::int64_t rows, std::int64_t n, float scale, bool log) {
  for (std::int64_t r = 0; r < rows; ++r) {
    if (log) log_softmax_forward_row<V>(y + r * n, x + r * n, n, scale);
    else softmax_forward_row<V>(y + r * n, x + r * n, n, scale);
  }
}

template <class V>
inline void softmax_backward(float* dx, const float* dy, const float* y, std::int64_t rows, std::int64_t n, float scale,
                             bool log) {
  for (std::int64_t r = 0; r < rows; ++r) {
    if (log) log_softmax_backward_row<V>(dx + r * n, dy + r * n, y + r * n, n, scale);
    else softmax_backward_row<V>(dx + r * n, dy + r * n, y + r * n, n, scale);
  }
}

}  // namespace attnkit::cpu::softmax_kernels
