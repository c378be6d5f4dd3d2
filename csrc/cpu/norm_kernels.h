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
// Square roots use __builtin_sqrtf rather than std::sqrt: std::sqrt(float) is
// an inline function, and an out-of-line copy of it compiled in an ISA
// translation unit could be picked by the linker for baseline code.
#pragma once

#include <cstdint>

namespace attnkit::cpu::norm_kernels {

// The `count` <= V::width elements at p (a whole vector or a row's tail; the
// missing lanes read as 0 and are not written).
template <class V>
inline V load_n(const float* p, int count) {
  return count == V::width ? V::load(p) : V::load_partial(p, count);
}
template <class V>
inline void store_n(V v, float* p, int count) {
  if (count == V::width)
    v.store(p);
  else
    v.store_partial(p, count);
}
template <class V>
inline int lanes_at(std::int64_t i, std::int64_t n) {
  return n - i >= V::width ? V::width : int(n - i);
}

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
  V sum_d = zero;
  V sum_d2 = zero;
  for (std::int64_t i = 0; i < n; i += V::width) {
    const int lanes = lanes_at<V>(i, n);
    const V d = select(V::first_lanes(lanes), load_n<V>(x + i, lanes) + minus_shift, zero);
    sum_d = sum_d + d;
    sum_d2 = fma(d, d, sum_d2);
  }
  RowMoments m;
  m.shift = shift;
  m.correction = reduce_sum(sum_d) / count;
  float variance = reduce_sum(sum_d2) / count - m.correction * m.correction;
  if (variance < 0.0f) variance = 0.0f;  // an ulp below 0 on (nearly) constant rows
  m.rstd = 1.0f / __builtin_sqrtf(variance + eps);
  return m;
}

template <class V>
inline float row_sum(const float* x, std::int64_t n) {
  V sum = V::broadcast(0.0f);
  for (std::int64_t i = 0; i < n; i += V::width) sum = sum + load_n<V>(x + i, lanes_at<V>(i, n));
  return reduce_sum(sum);
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
    V total = V::broadcast(0.0f);
    for (std::int64_t i = 0; i < C; i += V::width) {
      const int lanes = lanes_at<V>(i, C);
      const V s = load_n<V>(x + r * C + i, lanes) + load_n<V>(residual + r * C + i, lanes);
      store_n(s, sum_row + i, lanes);
      total = total + s;
    }
    const RowMoments m = moments_given_sum<V>(sum_row, C, reduce_sum(total), eps);
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
    V sum_d = zero;
    V sum_g = zero;
    V sum_gd = zero;
    for (std::int64_t i = 0; i < C; i += V::width) {
      const int lanes = lanes_at<V>(i, C);
      const V d = select(V::first_lanes(lanes), load_n<V>(x_row + i, lanes) - row_mean, zero);
      V g = load_n<V>(dy_row + i, lanes);
      if (weight) g = g * load_n<V>(weight + i, lanes);
      sum_d = sum_d + d;
      sum_g = sum_g + g;
      sum_gd = fma(g, d, sum_gd);
    }
    const float correction = reduce_sum(sum_d) / count;
    const float total_g = reduce_sum(sum_g);
    const V c = V::broadcast(correction);
    const V r_std = V::broadcast(rstd[r]);
    const V mean_g = V::broadcast(total_g / count);
    const V mean_g_x_hat =
        V::broadcast(rstd[r] * (reduce_sum(sum_gd) - correction * total_g) / count);
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
    V sum_squares = V::broadcast(0.0f);
    for (std::int64_t i = 0; i < C; i += V::width) {
      const V v = load_n<V>(x_row + i, lanes_at<V>(i, C));
      sum_squares = fma(v, v, sum_squares);
    }
    const float row_rstd =
        1.0f / __builtin_sqrtf(reduce_sum(sum_squares) / static_cast<float>(C) + eps);
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
    V sum_gx = V::broadcast(0.0f);
    for (std::int64_t i = 0; i < C; i += V::width) {
      const int lanes = lanes_at<V>(i, C);
      V g = load_n<V>(dy_row + i, lanes);
      if (weight) g = g * load_n<V>(weight + i, lanes);
      sum_gx = fma(g, load_n<V>(x_row + i, lanes), sum_gx);
    }
    const V r_std = V::broadcast(rstd[r]);
    const V mean_g_x_hat =
        V::broadcast(rstd[r] * reduce_sum(sum_gx) / static_cast<float>(C));
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
