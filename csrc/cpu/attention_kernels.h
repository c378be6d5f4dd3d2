// The leaf loops of flash-style attention over a Vec (see vec/vec_generic.h),
// written once and compiled per ISA: register-tiled micro-GEMMs for the
// products and the vectorized softmax steps between them. The blocking, the
// masks' classification and the threads live in attention.cpp.
//
// Score blocks are transposed, S^T [keys x queries]: a row per key, the
// queries of the block across the vector lanes. The softmax statistics are
// then per lane (max and sum over rows need no horizontal reduction), and
// the same block, read key-major, is the A operand of P V and of dS K with no
// packing. Partly masked blocks are masked in registers: a score is
// *replaced* by -inf, never added to, so a NaN or inf in a masked key cannot
// reach the softmax.
#pragma once

#include <cstdint>
#include <limits>

#include "cpu/attention.h"
#include "cpu/vec/vec_math.h"

namespace attnkit::cpu::attention_kernels {

constexpr float kNegativeInfinity = -std::numeric_limits<float>::infinity();

// Terms of a score's dot product summed in registers before they join the
// running sum (score_tile).
constexpr std::int64_t kScoreChunk = 16;

template <class V>
inline V load_lanes(const float* p, int lanes) {
  return lanes == V::width ? V::load(p) : V::load_partial(p, lanes);
}
template <class V>
inline void store_lanes(V x, float* p, int lanes) {
  if (lanes == V::width) x.store(p);
  else x.store_partial(p, lanes);
}

// ---- S^T = scale * A B^T, one block ----------------------------------------
//
// s[j * lds + i] = scale * sum_x a[j * lda + x] * bt[x * ldb + i] for keys j <
// rows and query lanes i < columns (a multiple of NV * W): A is K (or V) read
// in place, row by row; bt is Q^T (or dO^T) of the query block. An MR x NV
// register tile: per step of x, NV vectors of bt and MR broadcasts of A.
// With a mask (partial blocks) the masked scores become -inf. column_max, when
// given, is raised to the largest score of each query column.
template <class V, int MR, int NV, bool Masked>
inline void score_tile(float* s, std::int64_t lds, float* column_max, const float* a, std::int64_t lda, const float* bt,
                       std::int64_t ldb, int rows, std::int64_t depth, float scale, const BlockMask* mask,
                       std::int64_t row0, std::int64_t col0) {
  constexpr int W = V::width;
  const float* a_row[MR];
  for (int r = 0; r < MR; ++r) a_row[r] = a + (r < rows ? r : rows - 1) * lda;  // a short tile repeats its last row
  // The dot products in chunks of kScoreChunk terms, each summed in the
  // registers and then added to the block (in L1): the rounding error of a
  // float sum grows with the number of terms behind each rounding, and
  // chunks halve it against one chain of D terms (scores of magnitude 30-300
  // carry it into every exponential).
  alignas(64) float total[MR * NV * W];
  V acc[MR][NV];
  for (std::int64_t x0 = 0; x0 < depth; x0 += kScoreChunk) {
    const std::int64_t x1 = depth - x0 < kScoreChunk ? depth : x0 + kScoreChunk;
    for (int r = 0; r < MR; ++r)
      for (int v = 0; v < NV; ++v) acc[r][v] = V::broadcast(0.0f);
    for (std::int64_t x = x0; x < x1; ++x) {
      V b[NV];
      for (int v = 0; v < NV; ++v) b[v] = V::load(bt + x * ldb + v * W);
      for (int r = 0; r < MR; ++r) {
        const V ar = V::broadcast(a_row[r][x]);
        for (int v = 0; v < NV; ++v) acc[r][v] = fma(ar, b[v], acc[r][v]);
      }
    }
    // (every row, short tiles too: indexing acc by a run-time row count
    // would keep it in memory instead of registers)
    if (x0 > 0)
      for (int r = 0; r < MR; ++r)
        for (int v = 0; v < NV; ++v) acc[r][v] = V::load(total + (r * NV + v) * W) + acc[r][v];
    if (x1 < depth)
      for (int r = 0; r < MR; ++r)
        for (int v = 0; v < NV; ++v) acc[r][v].store(total + (r * NV + v) * W);
  }
  const V factor = V::broadcast(scale);
  const V minus_inf = V::broadcast(kNegativeInfinity);
  V top[NV];
  for (int v = 0; v < NV; ++v) top[v] = minus_inf;
  for (int r = 0; r < rows; ++r) {
    for (int v = 0; v < NV; ++v) {
      V x = acc[r][v] * factor;
      if constexpr (Masked) {
        const std::int64_t key = mask->j0 + row0 + r;
        if (mask->key_blocked != nullptr && mask->key_blocked[row0 + r] != 0.0f) {
          x = minus_inf;
        } else {
          const V j = V::broadcast(static_cast<float>(key));
          x = select(less(j, V::load(mask->first_key + col0 + v * W)), minus_inf, x);
          x = select(greater_equal(j, V::load(mask->end_key + col0 + v * W)), minus_inf, x);
          if (mask->residue != nullptr) {  // (a NaN residue compares neither way)
            const V key_residue = V::broadcast(static_cast<float>(key % mask->dilation));
            const V residue = V::load(mask->residue + col0 + v * W);
            x = select(less(key_residue, residue), minus_inf, x);
            x = select(less(residue, key_residue), minus_inf, x);
          }
        }
      }
      x.store(s + r * lds + v * W);
      top[v] = max(top[v], x);
    }
  }
  if (column_max != nullptr)
    for (int v = 0; v < NV; ++v) max(V::load(column_max + v * W), top[v]).store(column_max + v * W);
}

// The score tiles of one pass over columns [col, col + NV * W), every row.
template <class V, int MR, int NV>
inline void score_columns(float* s, std::int64_t lds, float* column_max, const float* a, std::int64_t lda,
                          const float* bt, std::int64_t ldb, std::int64_t rows, std::int64_t col, std::int64_t depth,
                          float scale, const BlockMask* mask) {
  for (std::int64_t row = 0; row < rows; row += MR) {
    const int n = static_cast<int>(rows - row < MR ? rows - row : MR);
    float* out = s + row * lds + col;
    float* top = column_max != nullptr ? column_max + col : nullptr;
    if (mask != nullptr)
      score_tile<V, MR, NV, true>(out, lds, top, a + row * lda, lda, bt + col, ldb, n, depth, scale, mask, row, col);
    else
      score_tile<V, MR, NV, false>(out, lds, top, a + row * lda, lda, bt + col, ldb, n, depth, scale, nullptr, row,
                                   col);
  }
}

// columns: a multiple of W; passes of NV vectors, then single vectors.
template <class V, int MR, int NV>
inline void block_scores(float* s, std::int64_t lds, float* column_max, const float* a, std::int64_t lda,
                         const float* bt, std::int64_t ldb, std::int64_t rows, std::int64_t columns, std::int64_t depth,
                         float scale, const BlockMask* mask) {
  constexpr int NR = NV * V::width;
  std::int64_t col = 0;
  for (; col + NR <= columns; col += NR)
    score_columns<V, MR, NV>(s, lds, column_max, a, lda, bt, ldb, rows, col, depth, scale, mask);
  for (; col < columns; col += V::width)
    score_columns<V, MR, 1>(s, lds, column_max, a, lda, bt, ldb, rows, col, depth, scale, mask);
}

// ---- C (+)= A B, the products that accumulate ------------------------------
//
// c[r * ldc + x] = f_r * c[r * ldc + x] + sum_p A(r, p) b[p * ldb + x], for r <
// rows, x < d, p < depth, where A(r, p) = a[r * a_row + p * a_step] (a_row = 1:
// A read from a key-major block, P^T or dS^T as the scores left them) and f_r
// = row_factor[r], or 1 when row_factor is null. B is V, dO, Q or K read in
// place. MR x NV register tiles over column chunks of NV vectors; the last,
// partial vector of a d that is not a multiple of the width comes in a chunk
// of its own (Partial).
template <class V, int MR, int NV, bool Partial>
inline void product_tile(float* c, std::int64_t ldc, const float* a, std::int64_t a_row, std::int64_t a_step,
                         const float* b, std::int64_t ldb, int rows, std::int64_t depth, int lanes,
                         const float* row_factor) {
  constexpr int W = V::width;
  const float* a_ptr[MR];
  for (int r = 0; r < MR; ++r) a_ptr[r] = a + (r < rows ? r : rows - 1) * a_row;
  V acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = V::broadcast(0.0f);
  for (std::int64_t p = 0; p < depth; ++p) {
    V bv[NV];
    for (int v = 0; v < NV; ++v)
      bv[v] = Partial ? V::load_partial(b + p * ldb + v * W, lanes) : V::load(b + p * ldb + v * W);
    for (int r = 0; r < MR; ++r) {
      const V ar = V::broadcast(a_ptr[r][p * a_step]);
      for (int v = 0; v < NV; ++v) acc[r][v] = fma(ar, bv[v], acc[r][v]);
    }
  }
  for (int r = 0; r < rows; ++r) {
    float* c_row = c + r * ldc;
    for (int v = 0; v < NV; ++v) {
      const int n = Partial ? lanes : W;
      V old = load_lanes<V>(c_row + v * W, n);
      if (row_factor != nullptr) old = old * V::broadcast(row_factor[r]);
      store_lanes(old + acc[r][v], c_row + v * W, n);
    }
  }
}

// The register tile's rows for NV vectors of columns: as many accumulators
// as the ISA's budget allows (Tiles below), at most kMaxRows.
template <class Tiles, int NV>
constexpr int product_rows() {
  constexpr int rows = Tiles::product_accumulators / NV;
  return rows > Tiles::product_max_rows ? Tiles::product_max_rows : rows < 1 ? 1 : rows;
}

// Columns [x0, x0 + NV * W * chunks) in chunks of NV vectors, all rows.
template <class V, class Tiles, int NV, bool Partial>
inline void product_columns(float* c, std::int64_t ldc, const float* a, std::int64_t a_row, std::int64_t a_step,
                            const float* b, std::int64_t ldb, std::int64_t rows, std::int64_t depth, int lanes,
                            const float* row_factor) {
  constexpr int MR = product_rows<Tiles, NV>();
  for (std::int64_t row = 0; row < rows; row += MR) {
    const int n = static_cast<int>(rows - row < MR ? rows - row : MR);
    product_tile<V, MR, NV, Partial>(c + row * ldc, ldc, a + row * a_row, a_row, a_step, b, ldb, n, depth, lanes,
                                     row_factor != nullptr ? row_factor + row : nullptr);
  }
}

// d columns: chunks of NV vectors while they last, then halves down to one
// vector, then the partial vector.
template <class V, class Tiles, int NV>
inline void product_chunks(float* c, std::int64_t ldc, const float* a, std::int64_t a_row, std::int64_t a_step,
                           const float* b, std::int64_t ldb, std::int64_t rows, std::int64_t depth,
                           std::int64_t full_vectors, int lanes, const float* row_factor) {
  constexpr int W = V::width;
  std::int64_t v = 0;
  for (; v + NV <= full_vectors; v += NV)
    product_columns<V, Tiles, NV, false>(c + v * W, ldc, a, a_row, a_step, b + v * W, ldb, rows, depth, W, row_factor);
  if constexpr (NV > 1) {
    product_chunks<V, Tiles, NV / 2>(c + v * W, ldc, a, a_row, a_step, b + v * W, ldb, rows, depth, full_vectors - v,
                                     lanes, row_factor);
  } else if (lanes > 0) {
    product_columns<V, Tiles, 1, true>(c + v * W, ldc, a, a_row, a_step, b + v * W, ldb, rows, depth, lanes,
                                       row_factor);
  }
}

template <class V, class Tiles>
inline void block_product(float* c, std::int64_t ldc, const float* a, std::int64_t a_row, std::int64_t a_step,
                          const float* b, std::int64_t ldb, std::int64_t rows, std::int64_t depth, std::int64_t d,
                          const float* row_factor) {
  if (rows <= 0) return;
  product_chunks<V, Tiles, Tiles::product_vectors>(c, ldc, a, a_row, a_step, b, ldb, rows, depth, d / V::width,
                                                   static_cast<int>(d % V::width), row_factor);
}

// ---- the softmax steps ------------------------------------------------------

// The exponential of the softmax, e^x for x <= 0 (a score minus a maximum, or
// -inf where masked: exactly 0; NaN stays NaN). Results below e^-87.68 (about
// 2^-126.5) are flushed to 0:
// next to the maximum's e^0 = 1 in the same sum they are below the rounding
// of any float sum, and the flush saves the subnormal scaling of vec_math::exp.
// The reduction r = x - n ln2 loses nothing but the last rounding (n ln2 in
// two parts, kLn2Hi n exact for |n| < 2^10 and fused into the subtraction).
// e^r on [-ln2/2, ln2/2] as 1 + (r + r^2 q(r)), q the Taylor series of
// (e^r - 1 - r) / r^2 to degree 5 (truncation < 6e-9): the small part is
// summed first and the 1 added last, so the result rounds once where it
// counts, about 0.75 ulp in all. (Horner's rule over the whole series ends
// on two additions of order 1 and is good to about 1.5 ulp: where a sum has
// a few terms, as dV of a short query block, that error shows.)
template <class V>
inline V softmax_exp(V x) {
  // n = round(x log2 e) >= -127, and n = -127 (x <= -87.68, -inf included)
  // gives 2^n the bit pattern of 0. Constant first: NaN stays NaN.
  x = max(V::broadcast(-88.0f), x);
  const V n = round_nearest(x * V::broadcast(vec_math::kLog2e));
  const V r = fma(n, V::broadcast(-vec_math::kLn2Lo), fma(n, V::broadcast(-vec_math::kLn2Hi), x));
  V q = V::broadcast(1.0f / 5040.0f);
  q = fma(q, r, V::broadcast(1.0f / 720.0f));
  q = fma(q, r, V::broadcast(1.0f / 120.0f));
  q = fma(q, r, V::broadcast(1.0f / 24.0f));
  q = fma(q, r, V::broadcast(1.0f / 6.0f));
  q = fma(q, r, V::broadcast(0.5f));
  const V small = fma(r * r, q, r);
  return (small + V::broadcast(1.0f)) * pow2_integer(n);
}

// One step of the online softmax (Milakov & Gimelshein 2018; FlashAttention,
// Dao et al. 2022) over a block s [rows keys x columns queries] whose column
// maxima are in column_max: s becomes P = e^(s - m_new) (0 where masked),
// running_sum = running_sum * e^(m_old - m_new) + sum_j P, running_max = m_new,
// and correction = e^(m_old - m_new), the factor that brings the output
// accumulated so far to the new maximum.
template <class V>
inline void softmax_block(float* s, std::int64_t lds, std::int64_t rows, std::int64_t columns, const float* column_max,
                          float* running_max, float* running_sum, float* correction) {
  constexpr int W = V::width;
  for (std::int64_t c = 0; c < columns; c += W) {
    const V old_max = V::load(running_max + c);
    const V new_max = max(old_max, V::load(column_max + c));
    // A query that has seen no visible key yet keeps P = 0: shift by 0, not
    // by -inf (e^(-inf - -inf) would be NaN).
    const V shift = select(less(new_max, V::broadcast(-3.0e38f)), V::broadcast(0.0f), new_max);
    // Four sums, one per row modulo 4, added pairwise at the end: a quarter
    // of the terms behind each rounding (this sum becomes lse, whose
    // rounding backward's P carries), and four independent chains.
    V sums[4] = {V::broadcast(0.0f), V::broadcast(0.0f), V::broadcast(0.0f), V::broadcast(0.0f)};
    for (std::int64_t j = 0; j < rows; ++j) {
      float* row = s + j * lds + c;
      const V p = softmax_exp(V::load(row) - shift);
      p.store(row);
      sums[j % 4] = sums[j % 4] + p;
    }
    const V block_sum = (sums[0] + sums[1]) + (sums[2] + sums[3]);
    const V factor = softmax_exp(old_max - shift);  // 0 on the first visible block
    fma(V::load(running_sum + c), factor, block_sum).store(running_sum + c);
    new_max.store(running_max + c);
    factor.store(correction + c);
  }
}

// Backward, between the products, over a block of rows keys x columns
// queries: from the scaled scores s (overwritten with P = e^(s - lse), 0
// where masked or where the query saw no key at all, lse = -inf) and dP^T =
// V dO^T (overwritten with dS = P (dP - delta), delta = rowsum(dO * O), the
// softmax Jacobian applied to dP).
template <class V>
inline void softmax_gradient_block(float* s, float* dp, std::int64_t ld, std::int64_t rows, std::int64_t columns,
                                   const float* lse, const float* delta) {
  constexpr int W = V::width;
  const V zero = V::broadcast(0.0f);
  for (std::int64_t c = 0; c < columns; c += W) {
    const V row_lse = V::load(lse + c);
    const auto seen = greater(row_lse, V::broadcast(kNegativeInfinity));
    const V shift = select(seen, row_lse, zero);
    const V row_delta = V::load(delta + c);
    for (std::int64_t j = 0; j < rows; ++j) {
      float* srow = s + j * ld + c;
      float* dprow = dp + j * ld + c;
      const V p = select(seen, softmax_exp(V::load(srow) - shift), zero);
      // select, not multiply: where P = 0 a NaN in dP must not survive
      const V ds = select(greater(p, zero), p * (V::load(dprow) - row_delta), zero);
      p.store(srow);
      ds.store(dprow);
    }
  }
}

// ---- moving rows ------------------------------------------------------------

// xt[x * ldt + i] = src[i * ld + x] for i < rows, x < d, and 0 for rows <= i
// < columns (a multiple of W): a query block as the B operand of S^T = K Q^T.
// W x W blocks are loaded a row at a time and transposed in registers.
template <class V>
inline void transpose_rows(float* xt, std::int64_t ldt, std::int64_t columns, const float* src, std::int64_t ld,
                           std::int64_t rows, std::int64_t d) {
  constexpr int W = V::width;
  for (std::int64_t i0 = 0; i0 < columns; i0 += W) {
    for (std::int64_t x0 = 0; x0 < d; x0 += W) {
      const int depth = d - x0 < W ? static_cast<int>(d - x0) : W;
      V block[W];
      for (int r = 0; r < W; ++r)
        block[r] = i0 + r < rows ? load_lanes<V>(src + (i0 + r) * ld + x0, depth) : V::broadcast(0.0f);
      transpose(block);
      for (int x = 0; x < depth; ++x) block[x].store(xt + (x0 + x) * ldt + i0);
    }
  }
}

// out[i * ldo + x] = acc[i * d + x] / sum[i] for i < rows, x < d, and 0 where
// sum[i] = 0 (a row that saw no key). A division, not a multiplication by a
// rounded reciprocal: one rounding.
template <class V>
inline void normalize_rows(float* out, std::int64_t ldo, const float* acc, std::int64_t rows, std::int64_t d,
                           const float* sum) {
  constexpr int W = V::width;
  for (std::int64_t i = 0; i < rows; ++i) {
    const V total = V::broadcast(sum[i]);
    for (std::int64_t x = 0; x < d; x += W) {
      const int lanes = d - x < W ? static_cast<int>(d - x) : W;
      const V o = sum[i] != 0.0f ? load_lanes<V>(acc + i * d + x, lanes) / total : V::broadcast(0.0f);
      store_lanes(o, out + i * ldo + x, lanes);
    }
  }
}

// out[i] = sum_x at[x * ld + i] bt[x * ld + i] for i < columns (a multiple of
// W): dot products down the columns of two transposed blocks, summed in
// exactly the order score_tile sums a score (chunks of kScoreChunk FMAs, each
// chunk then added to the running sum). Backward's delta = rowsum(dO * O) is
// computed so: where a query's softmax is (nearly) one-hot, O is (nearly) the
// row of V it picked, and dP - delta cancels (nearly) exactly, as it does in
// exact arithmetic, instead of leaving the rounding difference of two
// different summation orders (which is most of dS there).
template <class V>
inline void column_dot(float* out, const float* at, const float* bt, std::int64_t ld, std::int64_t columns,
                       std::int64_t depth) {
  constexpr int W = V::width;
  for (std::int64_t i = 0; i < columns; i += W) {
    V total = V::broadcast(0.0f);
    for (std::int64_t x0 = 0; x0 < depth; x0 += kScoreChunk) {
      const std::int64_t x1 = depth - x0 < kScoreChunk ? depth : x0 + kScoreChunk;
      V acc = V::broadcast(0.0f);
      for (std::int64_t x = x0; x < x1; ++x) acc = fma(V::load(at + x * ld + i), V::load(bt + x * ld + i), acc);
      total = x0 > 0 ? total + acc : acc;
    }
    total.store(out + i);
  }
}

// ---- decode: a few query rows against a long cache -------------------------
//
// Bound by reading K and V once: no packing, and the keys in the outer loop,
// so each key's row of the cache (every kv head, contiguous) is read once, in
// order, for all the query rows. Query row R = g * rows + r belongs to kv head
// g (R < kv_heads * rows), is stored at q + R * d, and is query r % queries.
// keys[0 .. n): the keys to visit, increasing (those the mask lets through;
// the others are never read); shown, when not null, says which of them each
// query sees: shown[query * shown_ld + index] != 0 (null: all of them). For
// these keys this computes each row's partial softmax statistics (row_max,
// row_sum) and unnormalized output acc[R * d + x] = sum_j exp(s_Rj -
// row_max_R) v_j[x]. scores: kv_heads * rows * n floats of scratch. k and v
// point at the batch's key 0, head 0; ldk and ldv are the strides from one
// key (value) to the next.
template <class V>
inline void decode_partial(float* acc, float* row_max, float* row_sum, float* scores, const float* q, int rows,
                           int kv_heads, const float* k, const float* v, std::int64_t ldk, std::int64_t ldv,
                           const std::int64_t* keys, std::int64_t n, std::int64_t d, float scale,
                           const std::uint8_t* shown, std::int64_t shown_ld, int queries) {
  constexpr int W = V::width;
  const int total_rows = kv_heads * rows;
  for (std::int64_t index = 0; index < n; ++index) {
    const float* key = k + keys[index] * ldk;
    for (int g = 0; g < kv_heads; ++g) {
      const float* kj = key + g * d;
      for (int r = 0; r < rows; ++r) {
        const int row = g * rows + r;
        float& score = scores[row * n + index];
        if (shown != nullptr && shown[(r % queries) * shown_ld + index] == 0) {
          score = kNegativeInfinity;
          continue;
        }
        const float* qr = q + row * d;
        V dot = V::broadcast(0.0f);
        for (std::int64_t x = 0; x < d; x += W) {
          const int lanes = d - x < W ? static_cast<int>(d - x) : W;
          dot = fma(load_lanes<V>(qr + x, lanes), load_lanes<V>(kj + x, lanes), dot);
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
        store_lanes(vec_math::exp(load_lanes<V>(s + j, lanes) - shift), s + j, lanes);
      }
      for (std::int64_t j = 0; j < n; ++j) total += s[j];
    }
    row_sum[row] = static_cast<float>(total);
    for (std::int64_t x = 0; x < d; ++x) acc[row * d + x] = 0.0f;
  }
  // acc += p_j v_j, each row of V read once for all the query rows; keys a
  // row does not see have p = 0 and are skipped.
  for (std::int64_t index = 0; index < n; ++index) {
    const float* value = v + keys[index] * ldv;
    for (int row = 0; row < total_rows; ++row) {
      const float p = scores[row * n + index];
      if (!(p > 0.0f)) continue;
      const float* vj = value + (row / rows) * d;
      const V pv = V::broadcast(p);
      float* a = acc + row * d;
      for (std::int64_t x = 0; x < d; x += W) {
        const int lanes = d - x < W ? static_cast<int>(d - x) : W;
        store_lanes(fma(pv, load_lanes<V>(vj + x, lanes), load_lanes<V>(a + x, lanes)), a + x, lanes);
      }
    }
  }
}

}  // namespace attnkit::cpu::attention_kernels
