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
// over the row sums d = x - mean as well, and c = sum(d) / C is the part of
// the mean that the float32 rounding lost.
//
// Row sums are compensated (row_reduction.h).
//
// Square roots use __builtin_sqrtf rather than std::sqrt: std::sqrt(float) is
// an inline function, and an out-of-line copy of it compiled in an ISA
// translation unit could be picked by the linker for baseline code.
#pragma once

#include <cstdint>

#include "cpu/row_reduction.h"

namespace attnkit::cpu::norm_kernels {

using row_reduction::CompensatedSum;
using row_reduction::lanes_at;
using row_reduction::load_n;
using row_reduction::store_n;

// A row's LayerNorm statistics: mean = shift + correction (see above).
struct RowMoments {
  float shift;
  float correction;
  float rstd;
};

// Statistics of a row x[0, n) whose sum (of the same float32 values) is `sum`.
template <class V>
inline RowMoments moments_given_sum(const float* x, std::int64_t n, float sum, float eps) {
  const float count = static_cast<float>(n);
  const float shift = sum / count;
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
  RowMoments m;
  m.shift = shift;
  m.correction = sum_d.total() / count;
  float variance = sum_d_squared.total() / count - m.correction * m.correction;
  if (variance < 0.0f) variance = 0.0f;  // an ulp below 0 on (nearly) constant rows
  m.rstd = 1.0f / __builtin_sqrtf(variance + eps);
  return m;
}

template <class V>
inline float row_sum(const float* x, std::int64_t n) {
  CompensatedSum<V> sum;
  for (std::int64_t i = 0; i < n; i += V::width) sum.add(load_n<V>(x + i, lanes_at<V>(i, n)));
  return sum.total();
}

// y = x_hat * weight + bias, x_hat = ((x - shift) - correction) * rstd;
// weight and bias may be null (1 and 0).
template <class V>
inline void normalize_row(float* y, const float* x, std::int64_t n, const RowMoments& m,
                          const float* weight, const float* bias) {
  const V shift = V::broadcast(m.shift);
  const V correction = V::broadcast(m.correction);
  const V rstd = V::broadcast(m.rstd);
  for (std::int64_t i = 0; i < n; i += V::width) {
    const int lanes = lanes_at<V>(i, n);
    const V x_hat = ((load_n<V>(x + i, lanes) - shift) - correction) * rstd;
    V out = x_hat;
    if (weight && bias)
      out = fma(x_hat, load_n<V>(weight + i, lanes), load_n<V>(bias + i, lanes));
    else if (weight)
      out = x_hat * load_n<V>(weight + i, lanes);
    else if (bias)
      out = x_hat + load_n<V>(bias + i, lanes);
    store_n(out, y + i, lanes);
  }
}

// Rows [0, rows) of width C: y[rows, C], mean[rows], rstd[rows].
template <class V>
inline void layer_norm_forward(float* y, float* mean, float* rstd, const float* x,
                               const float* weight, const float* bias, std::int64_t rows,
                               std::int64_t C, float eps) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* x_row = x + r * C;
    const RowMoments m = moments_given_sum<V>(x_row, C, row_sum<V>(x_row, C), eps);
    normalize_row<V>(y + r * C, x_row, C, m, weight, bias);
    mean[r] = m.shift + m.correction;
    rstd[r] = m.rstd;
  }
}

// sum = x + residual and y = layer_norm(sum): the first pass reads x and
// residual once and writes sum; the statistics and y passes read sum back
// while it is still in cache.
template <class V>
inline void add_layer_norm_forward(float* sum, float* y, float* mean, float* rstd, const float* x,
                                   const float* residual, const float* weight, const float* bias,
                                   std::int64_t rows, std::int64_t C, float eps) {
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
    const RowMoments m = moments_given_sum<V>(sum_row, C, total.total(), eps);
    normalize_row<V>(y + r * C, sum_row, C, m, weight, bias);
    mean[r] = m.shift + m.correction;
    rstd[r] = m.rstd;
  }
}

// LayerNorm backward over rows [0, rows), with g = dy * weight:
//   dx = rstd * (g - mean(g) - x_hat * mean(g * x_hat))  (+ dsum, if not null:
//        the gradient reaching the residual sum directly, for add_layer_norm)
//   dweight_partial += dy * x_hat,  dbias_partial += dy   (each may be null)
// mean(g * x_hat) = rstd * (sum(g d) - c sum(g)) / C with d = x - mean and
// c = mean(d), the correction to the saved mean (see above).
template <class V>
inline void layer_norm_backward(float* dx, float* dweight_partial, float* dbias_partial,
                                const float* dy, const float* dsum, const float* x,
                                const float* weight, const float* mean, const float* rstd,
                                std::int64_t rows, std::int64_t C) {
  const float count = static_cast<float>(C);
  const V zero = V::broadcast(0.0f);
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* x_row = x + r * C;
    const float* dy_row = dy + r * C;
    const V row_mean = V::broadcast(mean[r]);
    CompensatedSum<V> sum_d;
    CompensatedSum<V> sum_g;
    CompensatedSum<V> sum_gd;
    for (std::int64_t i = 0; i < C; i += V::width) {
      const int lanes = lanes_at<V>(i, C);
      const V d = select(V::first_lanes(lanes), load_n<V>(x_row + i, lanes) - row_mean, zero);
      V g = load_n<V>(dy_row + i, lanes);
      if (weight) g = g * load_n<V>(weight + i, lanes);
      sum_d.add(d);
      sum_g.add(g);
      sum_gd.add_product(g, d);
    }
    const float correction = sum_d.total() / count;
    const float total_g = sum_g.total();
    const V c = V::broadcast(correction);
    const V r_std = V::broadcast(rstd[r]);
    const V mean_g = V::broadcast(total_g / count);
    const V mean_g_x_hat =
        V::broadcast(rstd[r] * (sum_gd.total() - correction * total_g) / count);
    for (std::int64_t i = 0; i < C; i += V::width) {
      const int lanes = lanes_at<V>(i, C);
      const V x_hat = ((load_n<V>(x_row + i, lanes) - row_mean) - c) * r_std;
      const V dy_v = load_n<V>(dy_row + i, lanes);
      const V g = weight ? dy_v * load_n<V>(weight + i, lanes) : dy_v;
      V dx_v = fma(-x_hat, mean_g_x_hat, g - mean_g) * r_std;
      if (dsum) dx_v = dx_v + load_n<V>(dsum + r * C + i, lanes);
      store_n(dx_v, dx + r * C + i, lanes);
      if (dweight_partial)
        store_n(fma(dy_v, x_hat, load_n<V>(dweight_partial + i, lanes)), dweight_partial + i, lanes);
      if (dbias_partial)
        store_n(dy_v + load_n<V>(dbias_partial + i, lanes), dbias_partial + i, lanes);
    }
  }
}

// RMSNorm: y = x * rstd * weight, rstd = 1 / sqrt(mean(x^2) + eps).
template <class V>
inline void rms_norm_forward(float* y, float* rstd, const float* x, const float* weight,
                             std::int64_t rows, std::int64_t C, float eps) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* x_row = x + r * C;
    CompensatedSum<V> sum_squares;
    for (std::int64_t i = 0; i < C; i += V::width) {
      const V v = load_n<V>(x_row + i, lanes_at<V>(i, C));
      sum_squares.add_product(v, v);
    }
    const float row_rstd =
        1.0f / __builtin_sqrtf(sum_squares.total() / static_cast<float>(C) + eps);
    const V r_std = V::broadcast(row_rstd);
    for (std::int64_t i = 0; i < C; i += V::width) {
      const int lanes = lanes_at<V>(i, C);
      V out = load_n<V>(x_row + i, lanes) * r_std;
      if (weight) out = out * load_n<V>(weight + i, lanes);
      store_n(out, y + r * C + i, lanes);
    }
    rstd[r] = row_rstd;
  }
}

// RMSNorm backward, with g = dy * weight and x_hat = x * rstd:
//   dx = rstd * (g - x_hat * mean(g * x_hat)),  dweight_partial += dy * x_hat.
template <class V>
inline void rms_norm_backward(float* dx, float* dweight_partial, const float* dy, const float* x,
                              const float* weight, const float* rstd, std::int64_t rows,
                              std::int64_t C) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* x_row = x + r * C;
    const float* dy_row = dy + r * C;
    CompensatedSum<V> sum_gx;
    for (std::int64_t i = 0; i < C; i += V::width) {
      const int lanes = lanes_at<V>(i, C);
      V g = load_n<V>(dy_row + i, lanes);
      if (weight) g = g * load_n<V>(weight + i, lanes);
      sum_gx.add_product(g, load_n<V>(x_row + i, lanes));
    }
    const V r_std = V::broadcast(rstd[r]);
    const V mean_g_x_hat =
        V::broadcast(rstd[r] * sum_gx.total() / static_cast<float>(C));
    for (std::int64_t i = 0; i < C; i += V::width) {
      const int lanes = lanes_at<V>(i, C);
      const V x_hat = load_n<V>(x_row + i, lanes) * r_std;
      const V dy_v = load_n<V>(dy_row + i, lanes);
      const V g = weight ? dy_v * load_n<V>(weight + i, lanes) : dy_v;
      store_n(fma(-x_hat, mean_g_x_hat, g) * r_std, dx + r * C + i, lanes);
      if (dweight_partial)
        store_n(fma(dy_v, x_hat, load_n<V>(dweight_partial + i, lanes)), dweight_partial + i, lanes);
    }
  }
}

}  // namespace attnkit::cpu::norm_kernels
