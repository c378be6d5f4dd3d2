// The row operations of flash-style attention over a Vec (see vec/vec_generic.h),
// written once and compiled per ISA. The matrix products around them run on
// the GEMM's macro kernels; these are the parts between the products.
//
// Masking is described per query row by the visible key range [lo, hi) (from
// causality, the window and the sequence length) plus, optionally, one flag
// per key (a key padding mask): 1.0f where the key is ignored. Masked scores
// are *replaced* by -inf, never added to, so a NaN or inf in a masked key
// cannot reach the softmax.
#pragma once

#include <cstdint>
#include <limits>

#include "cpu/vec/vec_math.h"

namespace attnkit::cpu::attention_kernels {

constexpr float kNegativeInfinity = -std::numeric_limits<float>::infinity();

template <class V>
inline V lane_indices() {
  alignas(64) static constexpr float iota[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  return V::load(iota);
}

// Scores s[0:n] of one row, keys j0..j0+n-1: -inf outside [lo, hi) and where
// key_blocked is set.
template <class V>
inline V masked_scores(const float* s, std::int64_t j, int lanes, std::int64_t j0, std::int64_t lo, std::int64_t hi,
                       const float* key_blocked) {
  const V minus_inf = V::broadcast(kNegativeInfinity);
  V x = lanes == V::width ? V::load(s + j) : V::load_partial(s + j, lanes);
  const V column = lane_indices<V>() + V::broadcast(static_cast<float>(j0 + j));
  x = select(less(column, V::broadcast(static_cast<float>(lo))), minus_inf, x);
  x = select(greater_equal(column, V::broadcast(static_cast<float>(hi))), minus_inf, x);
  if (key_blocked != nullptr) {
    const V blocked = lanes == V::width ? V::load(key_blocked + j) : V::load_partial(key_blocked + j, lanes);
    x = select(greater(blocked, V::broadcast(0.0f)), minus_inf, x);
  }
  return x;
}

// One step of the online softmax (Milakov & Gimelshein 2018; FlashAttention,
// Dao et al. 2022) on a transposed score tile: s[j * lds + i] holds the scaled
// score of key j0 + j (rows, j < n) for query i (columns, i < columns), and is
// overwritten with P = exp(s - new_max), 0 where masked. Keys as rows make the
// softmax statistics per column, so vectors run across queries with no
// horizontal reductions. lo/hi: each query's visible key range (as floats,
// exact below 2^24). Per query: running_max and running_sum are updated and
// the query's row of the output accumulator out[i * ldo + 0:d] is rescaled by
// exp(old_max - new_max), so that out + P^T V stays the unnormalized sum over
// all keys seen so far.
template <class V>
inline void online_softmax_columns(float* s, std::int64_t lds, std::int64_t n, int columns, std::int64_t j0,
                                   const float* lo, const float* hi, const float* key_blocked, float* running_max,
                                   float* running_sum, float* out, std::int64_t ldo, std::int64_t d) {
  constexpr int W = V::width;
  const V minus_inf = V::broadcast(kNegativeInfinity);
  for (int c = 0; c < columns; c += W) {
    const int lanes = columns - c < W ? columns - c : W;
    auto load = [&](const float* p) { return lanes == W ? V::load(p) : V::load_partial(p, lanes); };
    auto store = [&](V x, float* p) {
      if (lanes == W) x.store(p);
      else x.store_partial(p, lanes);
    };
    const V first = load(lo + c), end = load(hi + c);
    V tile_max = minus_inf;
    for (std::int64_t j = 0; j < n; ++j) {
      float* row = s + j * lds + c;
      V x;
      if (key_blocked != nullptr && key_blocked[j] != 0.0f) {
        x = minus_inf;
      } else {
        const V key = V::broadcast(static_cast<float>(j0 + j));
        x = select(less(key, first), minus_inf, load(row));
        x = select(greater_equal(key, end), minus_inf, x);
      }
      store(x, row);
      tile_max = max(tile_max, x);
    }
    const V old_max = load(running_max + c);
    const V new_max = max(old_max, tile_max);
    // A query that has seen no visible key yet keeps P = 0: shift by 0, not
    // by -inf (exp(-inf - -inf) would be NaN).
    const V shift = select(less(new_max, V::broadcast(-3.0e38f)), V::broadcast(0.0f), new_max);
    V sum = V::broadcast(0.0f);
    for (std::int64_t j = 0; j < n; ++j) {
      float* row = s + j * lds + c;
      const V p = vec_math::exp(load(row) - shift);  // exp(-inf) = 0 where masked
      store(p, row);
      sum = sum + p;
    }
    const V correction = vec_math::exp(old_max - shift);  // 0 on the first visible tile
    store(fma(load(running_sum + c), correction, sum), running_sum + c);
    store(new_max, running_max + c);
    alignas(64) float factors[W];
    correction.store(factors);
    for (int lane = 0; lane < lanes; ++lane) {
      if (factors[lane] == 1.0f) continue;
      float* o = out + (c + lane) * ldo;
      const V f = V::broadcast(factors[lane]);
      for (std::int64_t x = 0; x < d; x += W) {
        const int width = d - x < W ? static_cast<int>(d - x) : W;
        const V scaled = (width == W ? V::load(o + x) : V::load_partial(o + x, width)) * f;
        if (width == W) scaled.store(o + x);
        else scaled.store_partial(o + x, width);
      }
    }
  }
}

// Backward, between the products: from the scaled scores s (overwritten with
// P = exp(s - lse), 0 where masked or where the whole row is masked, lse =
// -inf) and dP = dO V^T (overwritten with dS = P * (dP - delta), where delta
// = rowsum(dO * O), the softmax Jacobian applied to dP).
template <class V>
inline void softmax_backward_tile(float* s, float* dp, std::int64_t ld, int rows, std::int64_t n, std::int64_t j0,
                                  const std::int64_t* lo, const std::int64_t* hi, const float* key_blocked,
                                  const float* lse, const float* delta) {
  constexpr int W = V::width;
  for (int i = 0; i < rows; ++i) {
    float* srow = s + i * ld;
    float* dprow = dp + i * ld;
    if (lse[i] == kNegativeInfinity) {
      for (std::int64_t j = 0; j < n; ++j) srow[j] = dprow[j] = 0.0f;
      continue;
    }
    const V shift = V::broadcast(lse[i]);
    const V row_delta = V::broadcast(delta[i]);
    for (std::int64_t j = 0; j < n; j += W) {
      const int lanes = n - j < W ? static_cast<int>(n - j) : W;
      const V p = vec_math::exp(masked_scores<V>(srow, j, lanes, j0, lo[i], hi[i], key_blocked) - shift);
      const V g = lanes == W ? V::load(dprow + j) : V::load_partial(dprow + j, lanes);
      // select, not multiply: where P = 0 a NaN in dP must not survive
      const V ds = select(greater(p, V::broadcast(0.0f)), p * (g - row_delta), V::broadcast(0.0f));
      if (lanes == W) {
        p.store(srow + j);
        ds.store(dprow + j);
      } else {
        p.store_partial(srow + j, lanes);
        ds.store_partial(dprow + j, lanes);
      }
    }
  }
}

// delta[i] = sum_d dO[i, d] * O[i, d] for `rows` rows (strided).
template <class V>
inline void row_dot(float* delta, const float* a, std::int64_t lda, const float* b, std::int64_t ldb, std::int64_t rows,
                    std::int64_t d) {
  constexpr int W = V::width;
  for (std::int64_t i = 0; i < rows; ++i) {
    V acc = V::broadcast(0.0f);
    for (std::int64_t x = 0; x < d; x += W) {
      const int lanes = d - x < W ? static_cast<int>(d - x) : W;
      acc = fma(lanes == W ? V::load(a + i * lda + x) : V::load_partial(a + i * lda + x, lanes),
                lanes == W ? V::load(b + i * ldb + x) : V::load_partial(b + i * ldb + x, lanes), acc);
    }
    delta[i] = vec_math::lane_sum(acc);
  }
}

// ---- decode: a few query rows against a long cache -------------------------
//
// Bound by reading K and V once: no packing, and the keys in the outer loop,
// so each key's row of the cache (every kv head, contiguous) is read once, in
// order, for all the query rows. Query row R = g * rows + r belongs to kv head
// g (R < kv_heads * rows), is stored at q + R * d, and sees keys [lo[r],
// hi[r]). For keys [j0, j1) this computes each row's partial softmax
// statistics (row_max, row_sum) and unnormalized output acc[R * d + x] =
// sum_j exp(s_Rj - row_max_R) v_j[x]. scores: kv_heads * rows * (j1 - j0)
// floats of scratch. k and v point at the batch's key 0, head 0; ldk and ldv
// are the strides from one key (value) to the next.
template <class V>
inline void decode_partial(float* acc, float* row_max, float* row_sum, float* scores, const float* q, int rows,
                           int kv_heads, const float* k, const float* v, std::int64_t ldk, std::int64_t ldv,
                           std::int64_t j0, std::int64_t j1, std::int64_t d, float scale, const std::int64_t* lo,
                           const std::int64_t* hi, const float* key_blocked) {
  constexpr int W = V::width;
  const std::int64_t n = j1 - j0;
  const int total_rows = kv_heads * rows;
  for (std::int64_t j = j0; j < j1; ++j) {
    const bool padding = key_blocked != nullptr && key_blocked[j] != 0.0f;
    const float* key = k + j * ldk;
    for (int g = 0; g < kv_heads; ++g) {
      const float* kj = key + g * d;
      for (int r = 0; r < rows; ++r) {
        const int row = g * rows + r;
        float& score = scores[row * n + (j - j0)];
        if (padding || j < lo[r] || j >= hi[r]) {
          score = kNegativeInfinity;  // never read k_j: it may be padding
          continue;
        }
        const float* qr = q + row * d;
        V dot = V::broadcast(0.0f);
        for (std::int64_t x = 0; x < d; x += W) {
          const int lanes = d - x < W ? static_cast<int>(d - x) : W;
          dot = fma(lanes == W ? V::load(qr + x) : V::load_partial(qr + x, lanes),
                    lanes == W ? V::load(kj + x) : V::load_partial(kj + x, lanes), dot);
        }
        score = vec_math::lane_sum(dot) * scale;
      }
    }
  }
  for (int row = 0; row < total_rows; ++row) {
    float* s = scores + row * n;
    float m = kNegativeInfinity;
    for (std::int64_t j = 0; j < n; ++j) m = s[j] > m ? s[j] : m;
    row_max[row] = m;
    // The normalizer sums thousands of terms: in double, which costs one add
    // per key next to the 2 d floats of K and V read for it.
    double total = 0.0;
    if (m != kNegativeInfinity) {
      const V shift = V::broadcast(m);
      for (std::int64_t j = 0; j < n; j += W) {
        const int lanes = n - j < W ? static_cast<int>(n - j) : W;
        const V e = vec_math::exp((lanes == W ? V::load(s + j) : V::load_partial(s + j, lanes)) - shift);
        if (lanes == W) e.store(s + j);
        else e.store_partial(s + j, lanes);
      }
      for (std::int64_t j = 0; j < n; ++j) total += s[j];
    }
    row_sum[row] = static_cast<float>(total);
    for (std::int64_t x = 0; x < d; ++x) acc[row * d + x] = 0.0f;
  }
  // acc += p_j v_j, each row of V read once for all the query rows; masked
  // keys have p = 0 and are skipped, so padding in V is never read.
  for (std::int64_t j = j0; j < j1; ++j) {
    const float* value = v + j * ldv;
    for (int row = 0; row < total_rows; ++row) {
      const float p = scores[row * n + (j - j0)];
      if (!(p > 0.0f)) continue;
      const float* vj = value + (row / rows) * d;
      const V pv = V::broadcast(p);
      float* a = acc + row * d;
      for (std::int64_t x = 0; x < d; x += W) {
        const int lanes = d - x < W ? static_cast<int>(d - x) : W;
        const V sum = fma(pv, lanes == W ? V::load(vj + x) : V::load_partial(vj + x, lanes),
                          lanes == W ? V::load(a + x) : V::load_partial(a + x, lanes));
        if (lanes == W) sum.store(a + x);
        else sum.store_partial(a + x, lanes);
      }
    }
  }
}

}  // namespace attnkit::cpu::attention_kernels
