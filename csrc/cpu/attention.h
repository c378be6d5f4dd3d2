// CPU attention, flash-style: tiles of Q meet tiles of K and V under an online
// softmax; the Tq x Tk matrix is never materialized and only the log-sum-exp of
// each query row is saved for backward, which recomputes P tile by tile.
//
// Layout: q [B, Tq, H, D], k and v [B, Tk, Hkv, D], out [B, Tq, H, D], lse
// [B, H, Tq]. The rows of q, k and v (and of dq, dk, dv) may be further apart
// than H * D or Hkv * D floats: q_stride, k_stride and v_stride, so that all
// three can be read from one fused projection [B, T, (H + 2 Hkv) D] without
// copies. out and dout are always contiguous. Query head h reads key/value head h / (H / Hkv) (grouped-query
// attention; Hkv = H is multi-head, Hkv = 1 multi-query).
#pragma once

#include <cstdint>

namespace attnkit::cpu {

struct AttentionProblem {
  std::int64_t batch, query_length, key_length, heads, kv_heads, head_dim;
  // Floats from one position to the next in q and dq, k and dk, v and dv:
  // heads * head_dim and kv_heads * head_dim when they are separate arrays.
  std::int64_t q_stride, k_stride, v_stride;
  float scale;
  bool causal;
  // Query i sits at position i + (key_length - query_length). With window > 0,
  // key j is visible only when |position - j| < window.
  std::int64_t window;
  const std::int64_t* key_lengths;  // [B] or null: keys >= key_lengths[b] are padding
  const std::uint8_t* key_padding;  // [B, Tk] or null: nonzero = ignore that key
  // Sparse patterns. With them, key j is visible to the query at position i
  // when it is not padding, j <= i under causal, and either i or j is a
  // global token or (i, j) is in the local pattern: |i - j| < window (when
  // window > 0), (i - j) % dilation == 0, and block_mask[i / block_size *
  // block_columns + j / block_size] != 0 (when block_mask is given).
  std::int64_t dilation;              // 1: every key of the window; 0 reads as 1
  const std::int64_t* global_tokens;  // [global_count] increasing positions in [0, Tk), or null
  std::int64_t global_count;
  const std::uint8_t* block_mask;  // [ceil(Tk / block_size) x block_columns], or null
  std::int64_t block_size, block_columns;
  // The saved lse will feed attention_backward: compute the scores exactly as
  // backward recomputes them (the tiled path), never on the decode path.
  bool for_backward;
  // Attention dropout on the normalized probabilities: P[b, h, i, j] is
  // dropped when number ((b * H + h) * Tq + i) * Tk + j of the Philox stream
  // (seed, offset) is below drop_below (see cpu/random.h), kept ones are
  // scaled by dropout_scale. drop_below = 0: no dropout. Backward regenerates
  // the same mask.
  std::uint32_t dropout_drop_below;
  float dropout_scale;
  std::uint64_t dropout_seed, dropout_offset;
};

// out and lse from q, k, v.
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       const AttentionProblem& problem);

// dq, dk, dv from dout and what forward saved (out, lse) plus q, k, v.
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, const AttentionProblem& problem);

// ---- what each ISA provides ------------------------------------------------

// The mask of a partly visible block in the form the kernels apply in
// registers: key j0 + r (row r of the block) is visible to query column i
// when first_key[i] <= j0 + r < end_key[i] (positions as floats, exact below
// 2^24) and key_blocked is null or key_blocked[r] == 0.
//
// With a dilation (residue non-null), key j is visible to query column i
// only when j % dilation == residue[i] as well; a residue of NaN (a global
// query) lets every key through.
struct BlockMask {
  const float* first_key;
  const float* end_key;
  const float* key_blocked;
  std::int64_t j0;
  const float* residue;
  std::int64_t dilation;
};

// The register-tiled leaf loops of one ISA (attention_kernels.h;
// cpu/dispatch.h). Blocks of scores are transposed, keys x queries, with
// query_block queries across the lanes (a multiple of the register tiles of
// every kernel below, so a block never has a column tail).
struct AttentionKernels {
  std::int64_t query_block;
  // s[j * lds + i] = scale * sum_x a[j * lda + x] bt[x * ldb + i] for j < rows,
  // i < query_block, masked to -inf by mask (null: none); column_max (or
  // null) raised to each column's largest score.
  void (*block_scores)(float* s, std::int64_t lds, float* column_max, const float* a, std::int64_t lda, const float* bt,
                       std::int64_t ldb, std::int64_t rows, std::int64_t columns, std::int64_t depth, float scale,
                       const BlockMask* mask);
  // c[r * ldc + x] = f_r c[r * ldc + x] + sum_p a[r * a_row + p * a_step] b[p * ldb + x],
  // r < rows, x < d, p < depth; f_r = row_factor[r], or 1 when null.
  void (*block_product)(float* c, std::int64_t ldc, const float* a, std::int64_t a_row, std::int64_t a_step,
                        const float* b, std::int64_t ldb, std::int64_t rows, std::int64_t depth, std::int64_t d,
                        const float* row_factor);
  // One online-softmax step over a score block (see attention_kernels.h).
  void (*softmax_block)(float* s, std::int64_t lds, std::int64_t rows, std::int64_t columns, const float* column_max,
                        float* running_max, float* running_sum, float* correction);
  // P and dS of a block from its scores and dP (see attention_kernels.h).
  void (*softmax_gradient_block)(float* s, float* dp, std::int64_t ld, std::int64_t rows, std::int64_t columns,
                                 const float* lse, const float* delta);
  // xt[x * ldt + i] = src[i * ld + x], i < rows, x < d; 0 for rows <= i < columns.
  void (*transpose_rows)(float* xt, std::int64_t ldt, std::int64_t columns, const float* src, std::int64_t ld,
                         std::int64_t rows, std::int64_t d);
  // out[i * ldo + x] = acc[i * d + x] / sum[i] (0 where sum[i] = 0).
  void (*normalize_rows)(float* out, std::int64_t ldo, const float* acc, std::int64_t rows, std::int64_t d,
                         const float* sum);
  // out[i] = sum_x at[x * ld + i] bt[x * ld + i], i < columns: summed as
  // block_scores sums a score.
  void (*column_dot)(float* out, const float* at, const float* bt, std::int64_t ld, std::int64_t columns,
                     std::int64_t depth);
  // The decode path's partial softmax over the keys listed (see attention_kernels.h).
  void (*decode_partial)(float* acc, float* row_max, float* row_sum, float* scores, const float* q, int rows,
                         int kv_heads, const float* k, const float* v, std::int64_t ldk, std::int64_t ldv,
                         const std::int64_t* keys, std::int64_t n, std::int64_t d, float scale,
                         const std::uint8_t* shown, std::int64_t shown_ld, int queries);
};

}  // namespace attnkit::cpu
