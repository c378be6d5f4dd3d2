// The GEMM micro- and macro-kernels over a Vec (see vec/vec_generic.h), written
// once and compiled per ISA. Include a vec_<isa>.h first.
//
// A register tile holds MR rows x NV vectors of C in accumulators. Each step of
// k loads NV vectors of the packed B sliver and broadcasts MR values of the
// packed A sliver: MR*NV FMAs for NV + MR loads, so the tile is as large as the
// register file allows (accumulators + NV B vectors + 1 broadcast).
#pragma once

#include <cstdint>

#include "cpu/activation_kernels.h"
#include "cpu/gemm.h"

namespace attnkit::cpu::gemm_kernels {

template <class V>
inline V apply_activation(V x, GemmActivation activation) {
  switch (activation) {
    case GemmActivation::none: return x;
    case GemmActivation::relu: return max(V::broadcast(0.0f), x);  // NaN stays NaN
    case GemmActivation::gelu: return activation_kernels::gelu_exact(x);
    case GemmActivation::gelu_tanh: return activation_kernels::gelu_tanh(x);
  }
  return x;
}

// Loads/stores `count` floats: a whole vector, or the first count lanes.
template <class V>
inline V load_columns(const float* p, int count) {
  return count == V::width ? V::load(p) : V::load_partial(p, count);
}
template <class V>
inline void store_columns(V x, float* p, int count) {
  if (count == V::width) x.store(p);
  else x.store_partial(p, count);
}

// Writes the accumulators of the tile at (row, col) into C: alpha*acc, plus
// beta*C on the first k block (C is not read when beta = 0) or plus C on later
// ones; on the last k block, the bias and the activation.
template <class V, int MR, int NV>
inline void store_tile(const GemmMacroTile& t, V (&acc)[MR][NV], std::int64_t row, std::int64_t col) {
  constexpr int W = V::width;
  const int rows = static_cast<int>(t.m - row < MR ? t.m - row : MR);
  const V alpha = V::broadcast(t.alpha);
  const V beta = V::broadcast(t.beta);
  for (int i = 0; i < rows; ++i) {
    float* c_row = t.c + (row + i) * t.ldc + col;
    for (int v = 0; v < NV; ++v) {
      const std::int64_t left = t.n - col - v * W;
      if (left <= 0) break;
      const int cols = left < W ? static_cast<int>(left) : W;
      float* c_ptr = c_row + v * W;
      V r = acc[i][v] * alpha;
      if (!t.first_k) {
        r = r + load_columns<V>(c_ptr, cols);
      } else if (t.beta != 0.0f) {
        r = fma(beta, load_columns<V>(c_ptr, cols), r);
      }
      if (t.last_k) {
        if (t.bias != nullptr) r = r + load_columns<V>(t.bias + col + v * W, cols);
        if (t.pre_activation != nullptr) store_columns(r, t.pre_activation + (row + i) * t.ldc + col + v * W, cols);
        r = apply_activation(r, t.activation);
      }
      store_columns(r, c_ptr, cols);
    }
  }
}

// How many steps of k ahead the micro-kernel prefetches the B sliver.
constexpr int kPrefetchSteps = 8;

// acc = (kc x MR sliver of A)^T (kc x NR sliver of B), then into C.
template <class V, int MR, int NV>
inline void micro_tile(const GemmMacroTile& t, const float* a, const float* b, std::int64_t row, std::int64_t col) {
  constexpr int W = V::width;
  constexpr int NR = NV * W;
  // Ask for the C tile now so it is in L1 when the k loop ends: its rows are
  // ldc apart, a pattern the hardware prefetcher does not follow, and without
  // this the tile update waits on a cache miss per row (measured: ~15% of the
  // time at 1024^3).
  const int rows = static_cast<int>(t.m - row < MR ? t.m - row : MR);
  for (int i = 0; i < rows; ++i)
    for (int line = 0; line < NR; line += 16) __builtin_prefetch(t.c + (row + i) * t.ldc + col + line, 1, 2);
  V acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = V::broadcast(0.0f);
  for (std::int64_t p = 0; p < t.kc; ++p) {
    // The B sliver streams from L2 (the A sliver stays in L1): ask for its
    // rows kPrefetchSteps ahead, which the hardware prefetchers alone do not
    // bring in time (measured: +10-15% at KC = 256-512 on a 12 x 32 tile).
    // Prefetches past the sliver's end are harmless hints.
    for (int line = 0; line < NR; line += 16) __builtin_prefetch(b + (p + kPrefetchSteps) * NR + line, 0, 3);
    V bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = V::load(b + p * NR + v * W);
    for (int i = 0; i < MR; ++i) {
      const V ai = V::broadcast(a[p * MR + i]);
      for (int v = 0; v < NV; ++v) acc[i][v] = fma(ai, bv[v], acc[i][v]);
    }
  }
  // store_tile indexes the tile with run-time bounds (a partial tile). Where
  // GCC inlines this function into a larger caller, that can make it keep
  // `acc` itself in memory and store every accumulator on every step of the
  // loop above (seen with the macro kernel inlined into a benchmark loop: a
  // 512-bit store per FMA, half the FMA rate; decode_dot below had the same
  // in the library). The loop's accumulators stay in registers; a copy goes
  // to memory once.
  V finished[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) finished[i][v] = acc[i][v];
  store_tile<V, MR, NV>(t, finished, row, col);
}

// All register tiles of one packed A block x one packed B panel, a row strip
// of C (MR rows) at a time: the A sliver (MR x KC) stays in L1 while the B
// slivers of the panel stream past it from L2, and C is written along its rows
// (a few pages per strip). Walking a column strip of C instead touches one page
// per row of the block and spends the time on TLB misses (measured with 12 x 32
// tiles at 2048 x 768 x 3072: 122 against 143 GFLOP/s on one core).
template <class V, int MR, int NV>
inline void macro_kernel(const GemmMacroTile& t) {
  constexpr int NR = NV * V::width;
  for (std::int64_t row = 0; row < t.m; row += MR) {
    const float* a = t.packed_a + (row / MR) * t.kc * MR;
    for (std::int64_t col = 0; col < t.n; col += NR)
      micro_tile<V, MR, NV>(t, a, t.packed_b + (col / NR) * t.kc * NR, row, col);
  }
}

// ---- decode path: few rows of A, B streamed once from memory ---------------
//
// With M <= 16 a product is bound by reading B, so nothing is packed: each
// element of B is loaded once and used for every row of A straight away.

// The bias, the pre-activation copy and the activation over finished rows of C.
template <class V>
inline void epilogue_rows(float* c, std::int64_t ldc, std::int64_t m, std::int64_t n, const float* bias,
                          GemmActivation activation, float* pre_activation) {
  if (bias == nullptr && activation == GemmActivation::none) return;
  for (std::int64_t i = 0; i < m; ++i) {
    for (std::int64_t j = 0; j < n; j += V::width) {
      const int cols = n - j < V::width ? static_cast<int>(n - j) : V::width;
      V r = load_columns<V>(c + i * ldc + j, cols);
      if (bias != nullptr) r = r + load_columns<V>(bias + j, cols);
      if (pre_activation != nullptr) store_columns(r, pre_activation + i * ldc + j, cols);
      store_columns(apply_activation(r, activation), c + i * ldc + j, cols);
    }
  }
}

// C[0:m, col0:col1] = alpha * A B + beta * C for B row-major (row stride ldb).
// B is streamed row by row, a long contiguous piece at a time, and the m rows
// of C being summed live in a block that stays in L1 (m * nb floats = 16 KiB).
// Register tiles would instead walk down B a few cache lines per row, touching
// a new page on almost every load (measured: 14 GB/s instead of ~60 from L3).
template <class V>
inline void decode_columns(float* c, std::int64_t ldc, const float* a, std::int64_t lda, const float* b,
                           std::int64_t ldb, std::int64_t m, std::int64_t k, std::int64_t col0, std::int64_t col1,
                           float alpha, float beta) {
  constexpr int W = V::width;
  constexpr std::int64_t kBlockFloats = 4096;
  alignas(64) float block[kBlockFloats];
  std::int64_t nb = (kBlockFloats / m) / W * W;
  if (nb < W) nb = W;
  for (std::int64_t j0 = col0; j0 < col1; j0 += nb) {
    const std::int64_t cols = col1 - j0 < nb ? col1 - j0 : nb;
    const std::int64_t vectors = (cols + W - 1) / W;
    for (std::int64_t i = 0; i < m * nb; ++i) block[i] = 0.0f;
    // Four rows of B at a time: each partial sum in the block is loaded and
    // stored once per four FMAs, not once per FMA (the stores bound the loop).
    std::int64_t p = 0;
    for (; p + 4 <= k; p += 4) {
      const float* b_row = b + p * ldb + j0;
      for (std::int64_t v = 0; v < vectors; ++v) {
        const int lanes = cols - v * W < W ? static_cast<int>(cols - v * W) : W;
        const float* column = b_row + v * W;
        const V b0 = load_columns<V>(column, lanes), b1 = load_columns<V>(column + ldb, lanes);
        const V b2 = load_columns<V>(column + 2 * ldb, lanes), b3 = load_columns<V>(column + 3 * ldb, lanes);
        for (std::int64_t i = 0; i < m; ++i) {
          const float* ai = a + i * lda + p;
          float* sum = block + i * nb + v * W;
          V acc = fma(V::broadcast(ai[0]), b0, V::load(sum));
          acc = fma(V::broadcast(ai[1]), b1, acc);
          acc = fma(V::broadcast(ai[2]), b2, acc);
          fma(V::broadcast(ai[3]), b3, acc).store(sum);
        }
      }
    }
    for (; p < k; ++p) {
      const float* b_row = b + p * ldb + j0;
      for (std::int64_t v = 0; v < vectors; ++v) {
        const int lanes = cols - v * W < W ? static_cast<int>(cols - v * W) : W;
        const V bv = load_columns<V>(b_row + v * W, lanes);
        for (std::int64_t i = 0; i < m; ++i) {
          float* sum = block + i * nb + v * W;
          fma(V::broadcast(a[i * lda + p]), bv, V::load(sum)).store(sum);
        }
      }
    }
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t v = 0; v < vectors; ++v) {
        const int lanes = cols - v * W < W ? static_cast<int>(cols - v * W) : W;
        float* out = c + i * ldc + j0 + v * W;
        V r = V::load(block + i * nb + v * W) * V::broadcast(alpha);
        if (beta != 0.0f) r = fma(V::broadcast(beta), load_columns<V>(out, lanes), r);
        store_columns(r, out, lanes);
      }
  }
}

// C[i, j] = alpha * dot(A[i, :], Bt[j, :]) + beta * C[i, j] for R rows of A
// and 4 rows of Bt (B transposed: the weight [N, K] of a linear layer). Rows
// of Bt past `b_rows` repeat the last one and are not written.
// While the last group of rows of A passes, the next rows of Bt (next_rows
// of them from next_bt, or none) are requested, so that memory stays busy while this group reads
// its Bt rows from L1 (measured with 8 rows: 9.8 -> 10.5+ GB/s on one core).
template <class V, int R>
inline void decode_dot(float* c, std::int64_t ldc, const float* a, std::int64_t lda, const float* bt, std::int64_t ldb,
                       const float* next_bt, int next_rows, int b_rows, std::int64_t k, float alpha, float beta) {
  constexpr int W = V::width;
  const float* brow[4];
  for (int j = 0; j < 4; ++j) brow[j] = bt + (j < b_rows ? j : b_rows - 1) * ldb;
  V acc[R][4];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < 4; ++j) acc[i][j] = V::broadcast(0.0f);
  std::int64_t p = 0;
  for (; p + W <= k; p += W) {
    V bv[4];
    if (next_bt != nullptr)
      for (int j = 0; j < next_rows; ++j) __builtin_prefetch(next_bt + j * ldb + p, 0, 3);
    for (int j = 0; j < 4; ++j) bv[j] = V::load(brow[j] + p);
    for (int i = 0; i < R; ++i) {
      const V av = V::load(a + i * lda + p);
      for (int j = 0; j < 4; ++j) acc[i][j] = fma(av, bv[j], acc[i][j]);
    }
  }
  if (p < k) {  // the tail loads zeros past k
    const int lanes = static_cast<int>(k - p);
    V bv[4];
    for (int j = 0; j < 4; ++j) bv[j] = V::load_partial(brow[j] + p, lanes);
    for (int i = 0; i < R; ++i) {
      const V av = V::load_partial(a + i * lda + p, lanes);
      for (int j = 0; j < 4; ++j) acc[i][j] = fma(av, bv[j], acc[i][j]);
    }
  }
  // A copy for the loop below, whose run-time bound would otherwise keep
  // `acc` in memory and store every accumulator on every step above.
  V finished[R][4];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < 4; ++j) finished[i][j] = acc[i][j];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < b_rows; ++j) {
      float* out = c + i * ldc + j;
      const float r = alpha * vec_math::lane_sum(finished[i][j]);
      *out = beta != 0.0f ? r + beta * *out : r;
    }
}

// C[0:m, col0:col1] for B transposed, 4 rows of Bt at a time against groups
// of up to 4 rows of A (the 4 Bt rows stay in L1 while the groups pass).
template <class V>
inline void decode_dot_columns(float* c, std::int64_t ldc, const float* a, std::int64_t lda, const float* bt,
                               std::int64_t ldb, std::int64_t m, std::int64_t k, std::int64_t col0, std::int64_t col1,
                               float alpha, float beta) {
  for (std::int64_t j = col0; j < col1; j += 4) {
    const int b_rows = col1 - j < 4 ? static_cast<int>(col1 - j) : 4;
    for (std::int64_t i = 0; i < m; i += 4) {
      float* out = c + i * ldc + j;
      const float* a_rows = a + i * lda;
      const float* b_rows_ptr = bt + j * ldb;
      const bool last_group = i + 4 >= m;
      const float* next = last_group && j + 4 < col1 ? bt + (j + 4) * ldb : nullptr;
      const int next_rows = next == nullptr ? 0 : static_cast<int>(col1 - j - 4 < 4 ? col1 - j - 4 : 4);
      switch (m - i < 4 ? m - i : 4) {
        case 1:
          decode_dot<V, 1>(out, ldc, a_rows, lda, b_rows_ptr, ldb, next, next_rows, b_rows, k, alpha, beta);
          break;
        case 2:
          decode_dot<V, 2>(out, ldc, a_rows, lda, b_rows_ptr, ldb, next, next_rows, b_rows, k, alpha, beta);
          break;
        case 3:
          decode_dot<V, 3>(out, ldc, a_rows, lda, b_rows_ptr, ldb, next, next_rows, b_rows, k, alpha, beta);
          break;
        default:
          decode_dot<V, 4>(out, ldc, a_rows, lda, b_rows_ptr, ldb, next, next_rows, b_rows, k, alpha, beta);
          break;
      }
    }
  }
}

// The decode path for one column range: dot products against a transposed B
// (a linear layer's weight), else rows of B streamed through an L1 block.
template <class V>
inline void decode(const GemmDecodeRange& r) {
  if (r.transpose_b)
    decode_dot_columns<V>(r.c, r.ldc, r.a, r.lda, r.b, r.ldb, r.m, r.k, r.col0, r.col1, r.alpha, r.beta);
  else decode_columns<V>(r.c, r.ldc, r.a, r.lda, r.b, r.ldb, r.m, r.k, r.col0, r.col1, r.alpha, r.beta);
}

// ---- packing (gemm.h: gemm_pack_a, gemm_pack_b) ----------------------------
// A packed sliver is kc rows of `width` floats (mr rows of A or nr columns of
// B at each k). Either a row of it is a contiguous run of the source (A
// transposed, B not), copied with vector loads and stores, or it is a column
// of the source (A not transposed, B transposed): then W x W blocks are
// loaded a source row at a time, transposed in registers, and stored a packed
// row at a time, so no float is moved on its own.

// dst[0, width) = src[0, count), then zeros.
template <class V>
inline void pack_run(float* dst, const float* src, int count, int width) {
  for (int j = 0; j < width; j += V::width) {
    const V x = j < count ? V::load_partial(src + j, count - j) : V::broadcast(0.0f);
    x.store_partial(dst + j, width - j);
  }
}

// For p in [0, kc): dst[p * width + i] = src[i * stride + p] for i < count,
// then zeros up to width.
template <class V>
inline void pack_transposed(float* dst, int width, const float* src, std::int64_t stride, int count, std::int64_t kc) {
  constexpr int W = V::width;
  for (std::int64_t p0 = 0; p0 < kc; p0 += W) {
    const int depth = kc - p0 < W ? static_cast<int>(kc - p0) : W;
    for (int j = 0; j < width; j += W) {
      V block[W];
      for (int r = 0; r < W; ++r)
        block[r] = j + r < count ? V::load_partial(src + (j + r) * stride + p0, depth) : V::broadcast(0.0f);
      transpose(block);
      for (int q = 0; q < depth; ++q) block[q].store_partial(dst + (p0 + q) * width + j, width - j);
    }
  }
}

template <class V>
inline void pack_a(float* packed, const float* a, std::int64_t lda, bool transpose_a, std::int64_t m, std::int64_t kc,
                   int mr) {
  if (transpose_a) {
    // op(A)(i, p) = a[p * lda + i]: source row p holds row p of every
    // sliver, so it is read once, front to back. (Walking one sliver down
    // all p instead reads mr floats per row: with a long lda, such as the
    // LM head's weight gradient (lda = vocabulary), a new page every time.)
    for (std::int64_t p = 0; p < kc; ++p)
      for (std::int64_t r0 = 0; r0 < m; r0 += mr)
        pack_run<V>(packed + (r0 / mr) * kc * mr + p * mr, a + p * lda + r0,
                    static_cast<int>(m - r0 < mr ? m - r0 : mr), mr);
    return;
  }
  for (std::int64_t r0 = 0; r0 < m; r0 += mr) {  // op(A)(i, p) = a[i * lda + p]
    pack_transposed<V>(packed + (r0 / mr) * kc * mr, mr, a + r0 * lda, lda, static_cast<int>(m - r0 < mr ? m - r0 : mr),
                       kc);
  }
}

template <class V>
inline void pack_b(float* packed, const float* b, std::int64_t ldb, bool transpose_b, std::int64_t n, std::int64_t kc,
                   int nr) {
  for (std::int64_t j0 = 0; j0 < n; j0 += nr) {
    float* dst = packed + (j0 / nr) * kc * nr;
    const int cols = static_cast<int>(n - j0 < nr ? n - j0 : nr);
    if (!transpose_b) {  // op(B)(p, j) = b[p * ldb + j]
      for (std::int64_t p = 0; p < kc; ++p) pack_run<V>(dst + p * nr, b + p * ldb + j0, cols, nr);
    } else {  // op(B)(p, j) = b[j * ldb + p]
      pack_transposed<V>(dst, nr, b + j0 * ldb, ldb, cols, kc);
    }
  }
}

}  // namespace attnkit::cpu::gemm_kernels
