// LayerNorm, residual-add + LayerNorm and RMSNorm over the rows of x[N, C],
// written once over a Vec and compiled per ISA (norm.cpp for the generic
// build, avx2/norm_avx2.cpp, avx512/norm_avx512.cpp). Include a vec_<isa>.h
// first.
//
// LayerNorm's statistics come from the shifted-data algorithm: a first pass
// gives an approximate mean m0 = sum(x) / C; a second pass sums d = x - m0 and
// d^2; then
//   mean = m0 + c,  c = sum(d) / C,   var = sum(d^2) / C - c^2.
// When the mean is much larger than the spread (mean 1e4, std 1e-2), x - m0 is
// exact (x and m0 are within a factor 2 of each other, Sterbenz), so nothing
// is lost to the large mean; c is tiny next to the spread, so var has no
// cancellation. The normalized value is formed as (x - m0) - c, never as
// x - fl(mean): rounding the mean to float32 alone would move every x_hat by
// up to half an ulp of 1e4 divided by the std, i.e. 5% at std 1e-2.
// On a constant row, x - m0 is the same multiple of one ulp in every element,
// its sum is exact, c equals it, and x_hat = 0 exactly: y = bias.
//
// Backward recovers the same precision from the saved float32 mean: its pass
// over the row sums e = x - mean as well, and c = sum(e) / C is the part of
// the mean that the float32 rounding lost.
//
// Row sums are compensated (row_reduction.h) and the per-row arithmetic after
// them (means, variances, square roots) is done in double. Where a per-row
// result multiplies every element, it is applied as two floats (DoubleFloat):
// rstd in x_hat, so x_hat is rounded once; and in backward the terms of
//   g - mean(g) - x_hat mean(g x_hat),
// which can cancel almost entirely (always for C = 2, often on short rows), so
// that their difference is formed exactly before its one rounding. Backward
// recomputes rstd in double for this from x and eps; the saved float rstd is
// its high part. g = dy * weight is carried with its rounding error too.
//
// Square roots use __builtin_sqrt rather than std::sqrt: std::sqrt is
// an inline function, and an out-of-line copy of it compiled in an ISA
// translation unit could be picked by the linker for baseline code.
#pragma once

#include <cstdint>

#include "cpu/row_reduction.h"

namespace attnkit::cpu::norm_kernels {

using row_reduction::add_scaled_products_to_column_sums;
using row_reduction::add_to_column_sums;
using row_reduction::CompensatedSum;
using row_reduction::DoubleFloat;
using row_reduction::lanes_at;
using row_reduction::load_n;
using row_reduction::multiply;
using row_reduction::multiply_with_tail;
using row_reduction::split;
using row_reduction::store_n;
using row_reduction::sum_error;

// 1 / sqrt(variance + eps), in double. (A template, like everything here, so
// that each ISA's copy is a symbol of its own.)
template <class V>
inline double inverse_std(double variance, float eps) {
  return 1.0 / __builtin_sqrt(variance + eps);
}

// rstd as a DoubleFloat whose high part is the float the forward saved (so
// that backward's x_hat agrees with forward's) and whose low part is the rest.
template <class V>
inline DoubleFloat<V> around_saved(float saved, double exact) {
  return {V::broadcast(saved), V::broadcast(static_cast<float>(exact - saved))};
}

// A row's LayerNorm statistics: mean = shift + correction (see above).
template <class V>
struct RowMoments {
  V shift;
  V correction;
  DoubleFloat<V> rstd;
  float mean;        // shift + correction, rounded once
  float rstd_float;  // rstd rounded once
};

// g = dy * weight as a float and its exact rounding error (weight may be null).
template <class V>
struct Gradient {
  V g;
  V error;
};

template <class V>
inline Gradient<V> weighted_gradient(const float* dy, const float* weight, std::int64_t i, int lanes) {
  const V dy_v = load_n<V>(dy + i, lanes);
  if (!weight) return {dy_v, V::broadcast(0.0f)};
  const V w = load_n<V>(weight + i, lanes);
  const V g = dy_v * w;
  return {g, product_error(dy_v, w, g)};
}

// Statistics of a row x[0, n) whose sum (of the same float32 values) is `sum`.
template <class V>
inline RowMoments<V> moments_given_sum(const float* x, std::int64_t n, double sum, float eps) {
  const double count = static_cast<double>(n);
  const float shift = static_cast<float>(sum / count);
  const V minus_shift = V::broadcast(-shift);
  const V zero = V::broadcast(0.0f);
  CompensatedSum<V> sum_d;
  CompensatedSum<V> sum_d_squared;
  for (std::int64_t i = 0; i < n; i += V::width) {
    const int lanes = lanes_at<V>(i, n);
    const V d = select(V::first_lanes(lanes), load_n<V>(x + i, lanes) + minus_shift, zero);
    sum_d.add(d);
    sum_d_squared.add_product(d, d);
  }
  const double correction = sum_d.total() / count;
  double variance = sum_d_squared.total() / count - correction * correction;
  if (variance < 0.0) variance = 0.0;  // below 0 only by rounding, on (nearly) constant rows
  const double rstd = inverse_std<V>(variance, eps);
  return {V::broadcast(shift), V::broadcast(static_cast<float>(correction)), split<V>(rstd),
          static_cast<float>(shift + correction), static_cast<float>(rstd)};
}

template <class V>
inline double row_sum(const float* x, std::int64_t n) {
  CompensatedSum<V> sum;
  for (std::int64_t i = 0; i < n; i += V::width) sum.add(load_n<V>(x + i, lanes_at<V>(i, n)));
  return sum.total();
}

// y = x_hat * weight + bias, x_hat = ((x - shift) - correction) * rstd;
// weight and bias may be null (1 and 0).
template <class V>
inline void normalize_row(float* y, const float* x, std::int64_t n, const RowMoments<V>& m, const float* weight,
                          const float* bias) {
  for (std::int64_t i = 0; i < n; i += V::width) {
    const int lanes = lanes_at<V>(i, n);
    const V x_hat = multiply((load_n<V>(x + i, lanes) - m.shift) - m.correction, m.rstd);
    V out = x_hat;
    if (weight && bias) out = fma(x_hat, load_n<V>(weight + i, lanes), load_n<V>(bias + i, lanes));
    else if (weight) out = x_hat * load_n<V>(weight + i, lanes);
    else if (bias) out = x_hat + load_n<V>(bias + i, lanes);
    store_n(out, y + i, lanes);
  }
}

// Rows [0, rows) of width C: y[rows, C], mean[rows], rstd[rows].
template <class V>
inline void layer_norm_forward(float* y, float* mean, float* rstd, const float* x, const float* weight,
                               const float* bias, std::int64_t rows, std::int64_t C, float eps) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* x_row = x + r * C;
    const RowMoments<V> m = moments_given_sum<V>(x_row, C, row_sum<V>(x_row, C), eps);
    normalize_row<V>(y + r * C, x_row, C, m, weight, bias);
    mean[r] = m.mean;
    rstd[r] = m.rstd_float;
  }
}

// sum = x + residual and y = layer_norm(sum): the first pass reads x and
// residual once and writes sum; the statistics and y passes read sum back
// while it is still in cache.
template <class V>
inline void add_layer_norm_forward(float* sum, float* y, float* mean, float* rstd, const float* x,
                                   const float* residual, const float* weight, const float* bias, std::int64_t rows,
                                   std::int64_t C, float eps) {
  for (std::int64_t r = 0; r < rows; ++r) {
    float* sum_row = sum + r * C;
    const float* x_row = x + r * C;
    const float* residual_row = residual + r * C;
    CompensatedSum<V> total;
    for (std::int64_t i = 0; i < C; i += V::width) {
      const int lanes = lanes_at<V>(i, C);
      const V s = load_n<V>(x_row + i, lanes) + load_n<V>(residual_row + i, lanes);
      store_n(s, sum_row + i, lanes);
      total.add(s);
    }
    const RowMoments<V> m = moments_given_sum<V>(sum_row, C, total.total(), eps);
    normalize_row<V>(y + r * C, sum_row, C, m, weight, bias);
    mean[r] = m.mean;
    rstd[r] = m.rstd_float;
  }
}

// LayerNorm backward over rows [0, rows), with g = dy * weight:
//   dx = rstd * (g - mean(g) - x_hat * mean(g * x_hat))  (+ dsum, if not null:
//        the gradient reaching the residual sum directly, for add_layer_norm)
//   dweight_partial += dy * x_hat,  dbias_partial += dy   (each may be null;
//        [2, C] column sums, see row_reduction.h)
// With e = x - mean (the saved float mean), c = mean(e) and d = e - c:
//   x_hat * mean(g x_hat) = d k,  k = rstd^2 mean(g d) = (sum(g e) - c sum(g)) / (C (var + eps)),
// so the bracket is g - e k - b with b = mean(g) - c k; e is taken exactly (as
// a float and its TwoSum error), k and b are DoubleFloats, e k_high is split
// exactly, both subtractions keep their TwoSum errors, and dx is rounded once.
template <class V>
inline void layer_norm_backward(float* dx, float* dweight_partial, float* dbias_partial, const float* dy,
                                const float* dsum, const float* x, const float* weight, const float* mean,
                                const float* rstd, std::int64_t rows, std::int64_t C, float eps) {
  const double count = static_cast<double>(C);
  const V zero = V::broadcast(0.0f);
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* x_row = x + r * C;
    const float* dy_row = dy + r * C;
    const V row_mean = V::broadcast(mean[r]);
    CompensatedSum<V> sum_e;
    CompensatedSum<V> sum_e_squared;
    CompensatedSum<V> sum_g;
    CompensatedSum<V> sum_ge;
    for (std::int64_t i = 0; i < C; i += V::width) {
      const int lanes = lanes_at<V>(i, C);
      // x - mean = e + e_error exactly; the tail lanes give 0 for both.
      const V x_v = load_n<V>(x_row + i, lanes);
      const V e = select(V::first_lanes(lanes), x_v - row_mean, zero);
      const V e_error = select(V::first_lanes(lanes), sum_error(x_v, -row_mean, e), zero);
      const Gradient<V> g = weighted_gradient<V>(dy_row, weight, i, lanes);
      sum_g.add(g.g);
      sum_g.error = sum_g.error + g.error;
      sum_e.add(e);
      sum_e.error = sum_e.error + e_error;
      sum_e_squared.add_product(e, e);
      sum_e_squared.error = fma(e + e, e_error, sum_e_squared.error);
      sum_ge.add_product(g.g, e);
      sum_ge.error = fma(g.error, e, fma(g.g, e_error, sum_ge.error));
    }
    const double c = sum_e.total() / count;
    double variance = sum_e_squared.total() / count - c * c;
    if (variance < 0.0) variance = 0.0;
    const double total_g = sum_g.total();
    const double k = (sum_ge.total() - c * total_g) / (count * (variance + eps));
    const DoubleFloat<V> k_split = split<V>(k);
    const DoubleFloat<V> b = split<V>(total_g / count - c * k);
    const double row_rstd = inverse_std<V>(variance, eps);
    const DoubleFloat<V> r_std = around_saved<V>(rstd[r], row_rstd);
    const DoubleFloat<V> correction = split<V>(c);
    for (std::int64_t i = 0; i < C; i += V::width) {
      const int lanes = lanes_at<V>(i, C);
      const V x_v = load_n<V>(x_row + i, lanes);
      const V e = x_v - row_mean;
      const V e_error = sum_error(x_v, -row_mean, e);  // x - mean = e + e_error exactly
      const V dy_v = load_n<V>(dy_row + i, lanes);
      const Gradient<V> g = weighted_gradient<V>(dy_row, weight, i, lanes);
      const V e_k = e * k_split.high;
      const V g_minus_e_k = g.g - e_k;
      const V bracket = g_minus_e_k - b.high;
      const V rounding = sum_error(g.g, -e_k, g_minus_e_k) + sum_error(g_minus_e_k, -b.high, bracket);
      const V tail = (rounding + g.error) -
                     (product_error(e, k_split.high, e_k) + fma(e, k_split.low, fma(e_error, k_split.high, b.low)));
      V dx_v = multiply_with_tail(bracket, tail, r_std);
      if (dsum) dx_v = dx_v + load_n<V>(dsum + r * C + i, lanes);
      store_n(dx_v, dx + r * C + i, lanes);
      if (dweight_partial) {
        // x_hat = (e - c) rstd, with e - c as a float and its exact tail.
        const V d = e - correction.high;
        const V d_tail = (sum_error(e, -correction.high, d) + e_error) - correction.low;
        add_scaled_products_to_column_sums(dweight_partial, C, i, lanes, dy_v, d, d_tail, r_std);
      }
      if (dbias_partial) add_to_column_sums(dbias_partial, C, i, lanes, dy_v);
    }
  }
}

template <class V>
inline double sum_of_squares(const float* x, std::int64_t C) {
  CompensatedSum<V> sum;
  for (std::int64_t i = 0; i < C; i += V::width) {
    const V v = load_n<V>(x + i, lanes_at<V>(i, C));
    sum.add_product(v, v);
  }
  return sum.total();
}

// RMSNorm: y = x_hat * weight, x_hat = x * rstd, rstd = 1 / sqrt(mean(x^2) + eps).
template <class V>
inline void rms_norm_forward(float* y, float* rstd, const float* x, const float* weight, std::int64_t rows,
                             std::int64_t C, float eps) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* x_row = x + r * C;
    const double mean_square = sum_of_squares<V>(x_row, C) / static_cast<double>(C);
    const double row_rstd = inverse_std<V>(mean_square, eps);
    const DoubleFloat<V> r_std = split<V>(row_rstd);
    for (std::int64_t i = 0; i < C; i += V::width) {
      const int lanes = lanes_at<V>(i, C);
      V out = multiply(load_n<V>(x_row + i, lanes), r_std);
      if (weight) out = out * load_n<V>(weight + i, lanes);
      store_n(out, y + r * C + i, lanes);
    }
    rstd[r] = static_cast<float>(row_rstd);
  }
}

// RMSNorm backward, with g = dy * weight and x_hat = x * rstd:
//   dx = rstd * (g - x k),  k = rstd^2 mean(g x) = sum(g x) / (sum(x^2) + C eps),
//   dweight_partial += dy * x_hat
//   (dweight_partial: null, or [2, C] column sums, see row_reduction.h).
// g - x k can cancel almost entirely (on short rows x_hat^2 is near 1; with
// C = 1, dx = rstd g eps / (x^2 + eps)): k is a DoubleFloat, x k_high is split
// exactly, g - x k_high keeps its TwoSum error, and dx is rounded once.
template <class V>
inline void rms_norm_backward(float* dx, float* dweight_partial, const float* dy, const float* x, const float* weight,
                              const float* rstd, std::int64_t rows, std::int64_t C, float eps) {
  const double count = static_cast<double>(C);
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* x_row = x + r * C;
    const float* dy_row = dy + r * C;
    CompensatedSum<V> sum_squares;
    CompensatedSum<V> sum_gx;
    for (std::int64_t i = 0; i < C; i += V::width) {
      const int lanes = lanes_at<V>(i, C);
      const V x_v = load_n<V>(x_row + i, lanes);
      const Gradient<V> g = weighted_gradient<V>(dy_row, weight, i, lanes);
      sum_squares.add_product(x_v, x_v);
      sum_gx.add_product(g.g, x_v);
      sum_gx.error = fma(g.error, x_v, sum_gx.error);
    }
    const double squares = sum_squares.total();
    const double row_rstd = inverse_std<V>(squares / count, eps);
    const DoubleFloat<V> r_std = around_saved<V>(rstd[r], row_rstd);
    const DoubleFloat<V> k = split<V>(sum_gx.total() / (squares + count * eps));
    for (std::int64_t i = 0; i < C; i += V::width) {
      const int lanes = lanes_at<V>(i, C);
      const V x_v = load_n<V>(x_row + i, lanes);
      const V dy_v = load_n<V>(dy_row + i, lanes);
      const Gradient<V> g = weighted_gradient<V>(dy_row, weight, i, lanes);
      const V x_k = x_v * k.high;
      const V bracket = g.g - x_k;
      const V tail = (sum_error(g.g, -x_k, bracket) + g.error) - fma(x_v, k.low, product_error(x_v, k.high, x_k));
      store_n(multiply_with_tail(bracket, tail, r_std), dx + r * C + i, lanes);
      if (dweight_partial)
        add_scaled_products_to_column_sums(dweight_partial, C, i, lanes, dy_v, x_v, V::broadcast(0.0f), r_std);
    }
  }
}

}  // namespace attnkit::cpu::norm_kernels
