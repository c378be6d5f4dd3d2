// Cross-entropy fused with log-softmax over the rows of logits[N, vocab],
// written once over a Vec and compiled per ISA (isa/loss.cpp). Include a
// vec_<isa>.h first.
//
// With label smoothing e (Szegedy et al. 2016, as PyTorch defines it), the
// target distribution is q = (1 - e) onehot(t) + e / vocab, and
//   loss = -sum_j q_j log p_j = lse - (1 - e) z_t - e mean(z),
//   lse = log sum_j exp(z_j) = m + log s,  m = max z,  s = sum_j exp(z_j - m),
//   dloss/dz_j = p_j - q_j,  p_j = exp(z_j - m) / s.
//
// Forward reads each row once from memory: every lane keeps a running max
// and a sum rescaled whenever its max grows (the online softmax of Milakov
// and Gimelshein, 2018), and the lanes are merged at the end. The row goes by
// in chunks of 8 vectors (512 bytes with AVX-512, read twice from L1): first
// the chunk's max, then one rescaling per chunk and one exponential per
// element, instead of the two exponentials per element of the plain online
// update. The sums are compensated (row_reduction.h).
//
// What backward needs of a row is saved as (m, s), with s as two floats
// (high + low): 12 bytes a row, not lse rounded to float32. At |lse| = 1e4
// that rounding alone (half an ulp, 5e-4) would change every
// p_j = exp(z_j - lse) by 5e-4 relative, and even at |lse| ~ 10 the log/exp
// round trip costs several ulps more than p = exp(z - m) / s, which is what
// backward computes, directly into dlogits, one row at a time (no N x vocab
// temporary).
//
// -inf logits (masked classes) get p = 0; the running max starts at the lowest
// finite float rather than -inf, so no -inf - -inf = NaN appears.
//
// Scalar logarithms and exponentials use __builtin_log and __builtin_exp
// rather than std::log and std::exp: those are inline functions, and an
// out-of-line copy of one compiled in an ISA translation unit could be picked
// by the linker for baseline code.
#pragma once

#include <cstdint>

#include "cpu/row_reduction.h"
#include "cpu/vec/vec_math.h"

namespace attnkit::cpu::loss_kernels {

constexpr float kLowestFloat = -3.40282347e+38f;
constexpr float kNegativeInfinity = -__builtin_inff();

// What forward learns about a row: its max m, s = sum exp(z - m), sum z.
struct RowStatistics {
  float max;
  double sum_exp;
  double sum_logits;
};

constexpr std::int64_t kChunkVectors = 8;

// The sum of a row's logits (label smoothing's mean) is taken of z * 2^-64
// and scaled back in double: a sum of logits near float32's largest would
// overflow float32 (a loss of 5.6e38, +inf in float32, came out -inf), while
// the scaling, a power of two, is exact for any logit above 2^-85.
constexpr float kLogitSumScale = 0x1p-64f;
constexpr double kLogitSumUnscale = 0x1p64;

// The row's vector at j with its missing lanes set to -inf (no exp term, no max).
template <class V>
inline V load_masked(const float* z, std::int64_t j, std::int64_t vocab) {
  const int lanes = row_reduction::lanes_at<V>(j, vocab);
  return select(V::first_lanes(lanes), row_reduction::load_n<V>(z + j, lanes), V::broadcast(kNegativeInfinity));
}

// with_sum_logits: also sum z (only label smoothing needs it).
template <class V>
inline RowStatistics row_statistics(const float* z, std::int64_t vocab, bool with_sum_logits) {
  V m = V::broadcast(kLowestFloat);
  row_reduction::CompensatedSum<V> s;
  row_reduction::CompensatedSum<V> total;
  for (std::int64_t chunk = 0; chunk < vocab; chunk += kChunkVectors * V::width) {
    const std::int64_t chunk_end = vocab - chunk < kChunkVectors * V::width ? vocab : chunk + kChunkVectors * V::width;
    V m_new = m;
    for (std::int64_t j = chunk; j < chunk_end; j += V::width) m_new = max(load_masked<V>(z, j, vocab), m_new);
    s.scale(vec_math::exp(m - m_new));  // a factor of exactly 1 unless the max grew
    m = m_new;
    for (std::int64_t j = chunk; j < chunk_end; j += V::width) {
      const V v = load_masked<V>(z, j, vocab);
      s.add(vec_math::exp(v - m));
      // Missing lanes read as 0 here: right for the sum of z.
      if (with_sum_logits)
        total.add(row_reduction::load_n<V>(z + j, row_reduction::lanes_at<V>(j, vocab)) * V::broadcast(kLogitSumScale));
    }
  }
  RowStatistics out;
  out.max = reduce_max(m);
  s.scale(vec_math::exp(m - V::broadcast(out.max)));
  out.sum_exp = s.total();
  out.sum_logits = total.total() * kLogitSumUnscale;
  return out;
}

// losses[rows] (0 where the target is ignore_index) and statistics[rows, 3] =
// (m, s_high, s_low) per row, for rows [0, rows) of logits[rows, vocab]. Targets are valid
// (checked in ops/).
template <class V>
inline void cross_entropy_forward(float* losses, float* statistics, const float* logits, const std::int64_t* targets,
                                  std::int64_t rows, std::int64_t vocab, std::int64_t ignore_index,
                                  float label_smoothing) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t target = targets[r];
    if (target == ignore_index) {
      losses[r] = 0.0f;
      statistics[3 * r] = 0.0f;
      statistics[3 * r + 1] = 1.0f;
      statistics[3 * r + 2] = 0.0f;
      continue;
    }
    const float* z = logits + r * vocab;
    const RowStatistics row = row_statistics<V>(z, vocab, label_smoothing != 0.0f);
    // lse - z_t as (m - z_t) + log s, in double and rounded once: m - z_t is
    // exact, so large logits cost nothing beyond that rounding.
    double loss = static_cast<double>(row.max) - static_cast<double>(z[target]);
    if (label_smoothing != 0.0f) {
      const double mean_logit = row.sum_logits / static_cast<double>(vocab);
      loss = (1.0 - label_smoothing) * loss + label_smoothing * (row.max - mean_logit);
    }
    losses[r] = static_cast<float>(loss + __builtin_log(row.sum_exp));
    const float sum_high = static_cast<float>(row.sum_exp);
    statistics[3 * r] = row.max;
    statistics[3 * r + 1] = sum_high;
    statistics[3 * r + 2] = static_cast<float>(row.sum_exp - sum_high);
  }
}

// dlogits[rows, vocab] = g_r (p - q) per row, g_r = grad_loss[r * grad_stride]
// / grad_divisor (stride 0: one gradient for all rows, as for the mean and
// the sum); rows whose target is ignore_index get 0.
template <class V>
inline void cross_entropy_backward(float* dlogits, const float* statistics, const float* grad_loss,
                                   std::int64_t grad_stride, float grad_divisor, const float* logits,
                                   const std::int64_t* targets, std::int64_t rows, std::int64_t vocab,
                                   std::int64_t ignore_index, float label_smoothing) {
  const double off_target = label_smoothing / static_cast<double>(vocab);
  for (std::int64_t r = 0; r < rows; ++r) {
    float* dz = dlogits + r * vocab;
    const float* z = logits + r * vocab;
    const std::int64_t target = targets[r];
    std::int64_t j = 0;
    if (target == ignore_index) {
      const V zero = V::broadcast(0.0f);
      for (; j + V::width <= vocab; j += V::width) zero.store(dz + j);
      if (j < vocab) zero.store_partial(dz + j, int(vocab - j));
      continue;
    }
    const double g = static_cast<double>(grad_loss[r * grad_stride]) / grad_divisor;
    const float row_max = statistics[3 * r];
    const double sum_exp = static_cast<double>(statistics[3 * r + 1]) + statistics[3 * r + 2];
    const V minus_max = V::broadcast(-row_max);
    const V g_over_sum = V::broadcast(static_cast<float>(g / sum_exp));
    const V minus_g_off = V::broadcast(static_cast<float>(-g * off_target));
    for (; j + V::width <= vocab; j += V::width)
      fma(vec_math::exp(V::load(z + j) + minus_max), g_over_sum, minus_g_off).store(dz + j);
    if (j < vocab) {
      const int rest = int(vocab - j);
      fma(vec_math::exp(V::load_partial(z + j, rest) + minus_max), g_over_sum, minus_g_off).store_partial(dz + j, rest);
    }
    // The target's entry again, as (p_t - q_t) g in double: p_t - q_t
    // cancels when the model is confident (p_t near 1 - e), and a float exp
    // error there would be magnified.
    const double p_target = __builtin_exp(static_cast<double>(z[target]) - row_max) / sum_exp;
    const double on_target = (1.0 - label_smoothing) + label_smoothing / static_cast<double>(vocab);
    dz[target] = static_cast<float>((p_target - on_target) * g);
  }
}

}  // namespace attnkit::cpu::loss_kernels
