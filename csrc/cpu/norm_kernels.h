// LayerNorm, residual-add + LayerNorm and RMSNorm over the rows of x[N, C],
// written once over a Vec and compiled once per ISA into that ISA's
// NormKernels table (isa/norm.cpp). Include a vec_<isa>.h first.
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
// Every row is normalized in units of a power of two s near its largest
// magnitude (max |x| s in [1, 2)), so that its squares and sums stay within
// float32 whatever the data: rows like [2e19, -2e19, 0, 0] square past
// float32's 3.4e38 (the variance overflowed, and y came out 0 or NaN), a
// constant row of 3e38 sums past it, and rows of 1e-25 square below its
// smallest normal (the variance vanished). A product with a power of two is
// exact and every statistic follows it exactly (shift, mean and spread by s,
// variance by s^2, eps taken as eps s^2, rstd by 1 / s), so on ordinary rows
// every result keeps the bits of the unscaled computation. The saved mean
// and rstd are those of x itself.
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

constexpr double kLargestFloat = 3.4028234663852886e+38;

// A power of two s with largest * s in [1, 2), kept to the normal floats
// [2^-126, 2^126]; 1 for a row of zeros, or one holding an inf or NaN (whose
// results are NaN whatever the scale). (A template, like everything here, so
// that each ISA's copy is a symbol of its own.)
template <class V>
inline float power_of_two_scale(float largest) {
  std::uint32_t bits;
  __builtin_memcpy(&bits, &largest, sizeof(bits));
  const int exponent = static_cast<int>((bits >> 23) & 0xff);  // largest in [2^(exponent-127), 2^(exponent-126))
  if (largest == 0.0f || exponent == 0xff) return 1.0f;
  int scale_exponent = 254 - exponent;  // the biased exponent of 2^(127 - exponent)
  scale_exponent = scale_exponent < 1 ? 1 : (scale_exponent > 253 ? 253 : scale_exponent);
  const std::uint32_t scale_bits = static_cast<std::uint32_t>(scale_exponent) << 23;
  float scale;
  __builtin_memcpy(&scale, &scale_bits, sizeof(scale));
  return scale;
}

template <class V>
inline float row_largest(const float* x, std::int64_t n) {
  V largest = V::broadcast(0.0f);
  for (std::int64_t i = 0; i < n; i += V::width) largest = max(largest, abs(load_n<V>(x + i, lanes_at<V>(i, n))));
  return reduce_max(largest);
}

// variance + eps for the variance of a row scaled by `scale` (so eps counts
// as eps scale^2), and 1 / sqrt of it: in double.
template <class V>
inline double plus_eps(double variance, float eps, float scale) {
  const double s = scale;
  return variance + static_cast<double>(eps) * s * s;
}
template <class V>
inline double inverse_std(double variance_plus_eps) {
  return 1.0 / __builtin_sqrt(variance_plus_eps);
}

// rstd of a scaled row, for the products x_hat = (x s - mean s) rstd, capped
// at the largest float. Only a constant row reaches the cap: its scaled
// values are within a factor 2 of 1, so any other row has a variance of at
// least about 2^-48 / C; and a constant row has x - mean = 0 exactly, so the
// cap gives x_hat = 0 (y = bias) where eps s^2 alone would overflow float32.
template <class V>
inline double capped(double rstd) {
  return rstd > kLargestFloat ? kLargestFloat : rstd;
}

// rstd as a DoubleFloat whose high part is the float the forward saved (so
// that backward's x_hat agrees with forward's) and whose low part is the rest
// (none where the saved float overflowed: rstd is beyond float32 there).
template <class V>
inline DoubleFloat<V> around_saved(float saved, double exact) {
  const float low = saved - saved == 0.0f ? static_cast<float>(exact - saved) : 0.0f;
  return {V::broadcast(saved), V::broadcast(low)};
}

// The same for the scaled row's rstd (exact / scale), capped: the saved float
// divided by the scale is forward's high part, unless the saved float could
// not hold rstd to full precision (beyond float32's normal range); then it is
// the float of the recomputed value, as forward had it.
template <class V>
inline DoubleFloat<V> around_saved_scaled(float saved, float scale, double exact_scaled) {
  const double value = capped<V>(exact_scaled);
  float high = saved / scale;
  if (!(saved >= 1.17549435e-38f && high <= 3.40282347e+38f)) high = static_cast<float>(value);
  return {V::broadcast(high), V::broadcast(static_cast<float>(value - high))};
}

// A row's LayerNorm statistics, of the row scaled by `scale`: mean = (shift
// + correction) / scale (see above).
template <class V>
struct RowMoments {
  V scale;
  V shift;
  V correction;
  DoubleFloat<V> rstd;  // of the scaled row, capped
  float mean;           // of x, rounded once
  float rstd_float;     // of x, rounded once
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

// A row's sum (compensated) and its largest magnitude, in one pass.
template <class V>
struct RowSum {
  double sum;
  float largest;
};

template <class V>
inline RowSum<V> row_sum(const float* x, std::int64_t n) {
  CompensatedSum<V> sum;
  V largest = V::broadcast(0.0f);
  for (std::int64_t i = 0; i < n; i += V::width) {
    const V v = load_n<V>(x + i, lanes_at<V>(i, n));
    sum.add(v);
    largest = max(largest, abs(v));
  }
  return {sum.total(), reduce_max(largest)};
}

// Statistics of a row x[0, n) whose sum and largest magnitude (of the same
// float32 values) are `plain`.
template <class V>
inline RowMoments<V> moments_given_sum(const float* x, std::int64_t n, RowSum<V> plain, float eps) {
  const double count = static_cast<double>(n);
  const float scale = power_of_two_scale<V>(plain.largest);
  const V s = V::broadcast(scale);
  const V zero = V::broadcast(0.0f);
  // The scaled row's sum is the plain sum times the scale, exactly, unless the
  // plain one overflowed (a row of 1e38s): then it is summed again, scaled.
  double scaled_sum = plain.sum * scale;
  if (!(scaled_sum - scaled_sum == 0.0)) {
    CompensatedSum<V> sum;
    for (std::int64_t i = 0; i < n; i += V::width) sum.add(load_n<V>(x + i, lanes_at<V>(i, n)) * s);
    scaled_sum = sum.total();
  }
  const float shift = static_cast<float>(scaled_sum / count);
  const V minus_shift = V::broadcast(-shift);
  CompensatedSum<V> sum_d;
  CompensatedSum<V> sum_d_squared;
  for (std::int64_t i = 0; i < n; i += V::width) {
    const int lanes = lanes_at<V>(i, n);
    const V d = select(V::first_lanes(lanes), load_n<V>(x + i, lanes) * s + minus_shift, zero);
    sum_d.add(d);
    sum_d_squared.add_product(d, d);
  }
  const double correction = sum_d.total() / count;
  double variance = sum_d_squared.total() / count - correction * correction;
  if (variance < 0.0) variance = 0.0;  // below 0 only by rounding, on (nearly) constant rows
  const double rstd = inverse_std<V>(plus_eps<V>(variance, eps, scale));
  return {s,
          V::broadcast(shift),
          V::broadcast(static_cast<float>(correction)),
          split<V>(capped<V>(rstd)),
          static_cast<float>((shift + correction) / scale),
          static_cast<float>(rstd * scale)};
}

// y = x_hat * weight + bias, x_hat = ((x scale - shift) - correction) * rstd;
// weight and bias may be null (1 and 0).
template <class V>
inline void normalize_row(float* y, const float* x, std::int64_t n, const RowMoments<V>& m, const float* weight,
                          const float* bias) {
  for (std::int64_t i = 0; i < n; i += V::width) {
    const int lanes = lanes_at<V>(i, n);
    const V x_hat = multiply((load_n<V>(x + i, lanes) * m.scale - m.shift) - m.correction, m.rstd);
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
    V largest = V::broadcast(0.0f);
    for (std::int64_t i = 0; i < C; i += V::width) {
      const int lanes = lanes_at<V>(i, C);
      const V s = load_n<V>(x_row + i, lanes) + load_n<V>(residual_row + i, lanes);
      store_n(s, sum_row + i, lanes);
      total.add(s);
      largest = max(largest, abs(s));
    }
    const RowMoments<V> m = moments_given_sum<V>(sum_row, C, {total.total(), reduce_max(largest)}, eps);
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
// All of it on the row scaled as in forward (x s, mean s: e, c and d scale
// by s, k by 1 / s; the bracket and rstd (e - c) do not change).
template <class V>
inline void layer_norm_backward(float* dx, float* dweight_partial, float* dbias_partial, const float* dy,
                                const float* dsum, const float* x, const float* weight, const float* mean,
                                const float* rstd, std::int64_t rows, std::int64_t C, float eps) {
  const double count = static_cast<double>(C);
  const V zero = V::broadcast(0.0f);
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* x_row = x + r * C;
    const float* dy_row = dy + r * C;
    const float scale = power_of_two_scale<V>(row_largest<V>(x_row, C));
    const V s = V::broadcast(scale);
    const V row_mean = V::broadcast(mean[r] * scale);
    CompensatedSum<V> sum_e;
    CompensatedSum<V> sum_e_squared;
    CompensatedSum<V> sum_g;
    CompensatedSum<V> sum_ge;
    for (std::int64_t i = 0; i < C; i += V::width) {
      const int lanes = lanes_at<V>(i, C);
      // x - mean = e + e_error exactly; the tail lanes give 0 for both.
      const V x_v = load_n<V>(x_row + i, lanes) * s;
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
    const double variance_plus_eps = plus_eps<V>(variance, eps, scale);
    const double k = (sum_ge.total() - c * total_g) / (count * variance_plus_eps);
    const DoubleFloat<V> k_split = split<V>(k);
    const DoubleFloat<V> b = split<V>(total_g / count - c * k);
    const double scaled_rstd = inverse_std<V>(variance_plus_eps);
    const DoubleFloat<V> r_std = around_saved<V>(rstd[r], scaled_rstd * scale);
    const DoubleFloat<V> r_std_scaled = around_saved_scaled<V>(rstd[r], scale, scaled_rstd);
    const DoubleFloat<V> correction = split<V>(c);
    for (std::int64_t i = 0; i < C; i += V::width) {
      const int lanes = lanes_at<V>(i, C);
      const V x_v = load_n<V>(x_row + i, lanes) * s;
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
        add_scaled_products_to_column_sums(dweight_partial, C, i, lanes, dy_v, d, d_tail, r_std_scaled);
      }
      if (dbias_partial) add_to_column_sums(dbias_partial, C, i, lanes, dy_v);
    }
  }
}

// sum (x s)^2 over a row.
template <class V>
inline double sum_of_squares(const float* x, std::int64_t C, V s) {
  CompensatedSum<V> sum;
  for (std::int64_t i = 0; i < C; i += V::width) {
    const V v = load_n<V>(x + i, lanes_at<V>(i, C)) * s;
    sum.add_product(v, v);
  }
  return sum.total();
}

// RMSNorm: y = x_hat * weight, x_hat = x * rstd, rstd = 1 / sqrt(mean(x^2) + eps),
// on the row scaled as LayerNorm's (x_hat = (x s) (rstd / s)).
template <class V>
inline void rms_norm_forward(float* y, float* rstd, const float* x, const float* weight, std::int64_t rows,
                             std::int64_t C, float eps) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* x_row = x + r * C;
    const float scale = power_of_two_scale<V>(row_largest<V>(x_row, C));
    const V s = V::broadcast(scale);
    const double mean_square = sum_of_squares<V>(x_row, C, s) / static_cast<double>(C);
    const double row_rstd = inverse_std<V>(plus_eps<V>(mean_square, eps, scale));
    const DoubleFloat<V> r_std = split<V>(capped<V>(row_rstd));
    for (std::int64_t i = 0; i < C; i += V::width) {
      const int lanes = lanes_at<V>(i, C);
      V out = multiply(load_n<V>(x_row + i, lanes) * s, r_std);
      if (weight) out = out * load_n<V>(weight + i, lanes);
      store_n(out, y + r * C + i, lanes);
    }
    rstd[r] = static_cast<float>(row_rstd * scale);
  }
}

// RMSNorm backward, with g = dy * weight and x_hat = x * rstd:
//   dx = rstd * (g - x k),  k = rstd^2 mean(g x) = sum(g x) / (sum(x^2) + C eps),
//   dweight_partial += dy * x_hat
//   (dweight_partial: null, or [2, C] column sums, see row_reduction.h).
// g - x k can cancel almost entirely (on short rows x_hat^2 is near 1; with
// C = 1, dx = rstd g eps / (x^2 + eps)): k is a DoubleFloat, x k_high is split
// exactly, g - x k_high keeps its TwoSum error, and dx is rounded once.
// On the row scaled as in forward (x s: k scales by 1 / s, the bracket and
// x rstd do not change).
template <class V>
inline void rms_norm_backward(float* dx, float* dweight_partial, const float* dy, const float* x, const float* weight,
                              const float* rstd, std::int64_t rows, std::int64_t C, float eps) {
  const double count = static_cast<double>(C);
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* x_row = x + r * C;
    const float* dy_row = dy + r * C;
    const float scale = power_of_two_scale<V>(row_largest<V>(x_row, C));
    const V s = V::broadcast(scale);
    CompensatedSum<V> sum_squares;
    CompensatedSum<V> sum_gx;
    for (std::int64_t i = 0; i < C; i += V::width) {
      const int lanes = lanes_at<V>(i, C);
      const V x_v = load_n<V>(x_row + i, lanes) * s;
      const Gradient<V> g = weighted_gradient<V>(dy_row, weight, i, lanes);
      sum_squares.add_product(x_v, x_v);
      sum_gx.add_product(g.g, x_v);
      sum_gx.error = fma(g.error, x_v, sum_gx.error);
    }
    const double squares = sum_squares.total();
    const double scaled_rstd = inverse_std<V>(plus_eps<V>(squares / count, eps, scale));
    const DoubleFloat<V> r_std = around_saved<V>(rstd[r], scaled_rstd * scale);
    const DoubleFloat<V> r_std_scaled = around_saved_scaled<V>(rstd[r], scale, scaled_rstd);
    const DoubleFloat<V> k = split<V>(sum_gx.total() / (squares + count * static_cast<double>(eps) * scale * scale));
    for (std::int64_t i = 0; i < C; i += V::width) {
      const int lanes = lanes_at<V>(i, C);
      const V x_v = load_n<V>(x_row + i, lanes) * s;
      const V dy_v = load_n<V>(dy_row + i, lanes);
      const Gradient<V> g = weighted_gradient<V>(dy_row, weight, i, lanes);
      const V x_k = x_v * k.high;
      const V bracket = g.g - x_k;
      const V tail = (sum_error(g.g, -x_k, bracket) + g.error) - fma(x_v, k.low, product_error(x_v, k.high, x_k));
      store_n(multiply_with_tail(bracket, tail, r_std), dx + r * C + i, lanes);
      if (dweight_partial)
        add_scaled_products_to_column_sums(dweight_partial, C, i, lanes, dy_v, x_v, V::broadcast(0.0f), r_std_scaled);
    }
  }
}

}  // namespace attnkit::cpu::norm_kernels
