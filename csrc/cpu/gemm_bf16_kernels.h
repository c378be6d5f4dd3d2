// The bf16 GEMM kernels (cpu/gemm.h, GemmBf16Kernels), written once and
// compiled per ISA; include gemm_kernels.h first. Three tiers:
//  - widened (any ISA): A and B widened to float32 as they are packed, into
//    the float32 kernels' layout, then the float32 macro kernel: exact
//    products and float32 sums, the portable fallback;
//  - dot products (AVX512-BF16): vdpbf16ps multiplies pairs of bf16 along k
//    and adds both products into a float32 lane, so A and B are packed in
//    pairs of k ("VNNI layout"): a packed row of a B sliver holds, for each
//    column j, op(B)(p, j) and op(B)(p + 1, j) side by side;
//  - AMX tiles: tdpbf16ps multiplies a 16 x 32 tile of A (rows x k) by a
//    16 x 16 tile of B in the same pair layout (16 pairs of k x 16 columns),
//    into a 16 x 16 float32 tile.
// The hardware's dot products flush subnormal inputs and results to zero;
// everything else is the float32 arithmetic of the products' sums.
#pragma once

#include <cstdint>
#include <cstring>

#include "cpu/gemm.h"
#include "cpu/gemm_kernels.h"
#include "cpu/vec/vec_math.h"

namespace attnkit::cpu::gemm_bf16_kernels {

// The helpers are templates over the ISA's Vec too, so each ISA gets its own
// copy (an inline function shared by every ISA's objects would be kept once,
// maybe compiled with AVX-512: see cpu/isa/isa.h).
template <class V>
inline float widen(std::uint16_t bits) {
  const std::uint32_t wide = std::uint32_t(bits) << 16;
  float x;
  std::memcpy(&x, &wide, sizeof x);
  return x;
}

template <class V>
inline std::int64_t round_up(std::int64_t a, std::int64_t b) {
  return (a + b - 1) / b * b;
}

// ---- widened: the float32 layout (gemm_kernels.h) -------------------------
//
// The packing routines below walk the source along its rows (contiguous
// reads) and keep the choice of layout out of their inner loops, which the
// compiler then vectorizes or at least keeps free of branches: packing
// touches every element of A and B once per block, and with a per-element
// branch it cost as much as an AMX product of 1024^3.

// Slivers of `width` (mr rows of A or nr columns of B) x kc, k-major:
// packed[s][p][i] = op(X)(s * width + i, p), zeros past `count`. `rows_along_p`
// says whether the source's rows run along p (A not transposed, B transposed):
// op(X)(i, p) = x[i * ld + p]; else x[p * ld + i].
template <class V>
inline void pack_widened(void* packed, const std::uint16_t* x, std::int64_t ld, bool rows_along_p, std::int64_t count,
                         std::int64_t kc, int width) {
  float* out = static_cast<float*>(packed);
  for (std::int64_t i0 = 0; i0 < count; i0 += width) {
    float* sliver = out + (i0 / width) * kc * width;
    const int n = static_cast<int>(count - i0 < width ? count - i0 : width);
    if (rows_along_p) {
      for (int i = 0; i < n; ++i) {
        const std::uint16_t* src = x + (i0 + i) * ld;
        for (std::int64_t p = 0; p < kc; ++p) sliver[p * width + i] = widen<V>(src[p]);
      }
      for (std::int64_t p = 0; p < kc; ++p)
        for (int i = n; i < width; ++i) sliver[p * width + i] = 0.0f;
    } else {
      for (std::int64_t p = 0; p < kc; ++p) {
        const std::uint16_t* src = x + p * ld + i0;
        float* row = sliver + p * width;
        for (int i = 0; i < n; ++i) row[i] = widen<V>(src[i]);
        for (int i = n; i < width; ++i) row[i] = 0.0f;
      }
    }
  }
}

template <class V>
inline void pack_a_widened(void* packed, const std::uint16_t* a, std::int64_t lda, bool transpose, std::int64_t m,
                           std::int64_t kc, int mr) {
  pack_widened<V>(packed, a, lda, !transpose, m, kc, mr);
}

template <class V>
inline void pack_b_widened(void* packed, const std::uint16_t* b, std::int64_t ldb, bool transpose, std::int64_t n,
                           std::int64_t kc, int nr) {
  pack_widened<V>(packed, b, ldb, transpose, n, kc, nr);
}

template <class V, int MR, int NV>
inline void macro_kernel_widened(const GemmMacroTile& tile, const void* packed_a, const void* packed_b) {
  GemmMacroTile t = tile;
  t.packed_a = static_cast<const float*>(packed_a);
  t.packed_b = static_cast<const float*>(packed_b);
  gemm_kernels::macro_kernel<V, MR, NV>(t);
}

// ---- pairs of k: the layout of vdpbf16ps and of AMX's B tiles ------------

// Slivers of `width` x round_up(kc, KM) in pairs of k:
// packed[s][p / 2][i][p % 2] = op(X)(s * width + i, p), zeros past count and
// kc (rows_along_p as in pack_widened). Pair row p / 2 starts at p * width.
template <class V, int KM>
inline void pack_pairs(void* packed, const std::uint16_t* x, std::int64_t ld, bool rows_along_p, std::int64_t count,
                       std::int64_t kc, int width) {
  std::uint16_t* out = static_cast<std::uint16_t*>(packed);
  const std::int64_t depth = round_up<V>(kc, KM);
  const std::int64_t whole_pairs = kc / 2 * 2;
  for (std::int64_t i0 = 0; i0 < count; i0 += width) {
    std::uint16_t* sliver = out + (i0 / width) * depth * width;
    const int n = static_cast<int>(count - i0 < width ? count - i0 : width);
    if (rows_along_p) {
      // Each source row is one column of the sliver: its pairs of k are
      // 32-bit words, one per pair row.
      for (int i = 0; i < n; ++i) {
        const std::uint16_t* src = x + (i0 + i) * ld;
        std::uint16_t* column = sliver + 2 * i;
        std::int64_t p = 0;
        for (; p < whole_pairs; p += 2) std::memcpy(column + p * width, src + p, 2 * sizeof(std::uint16_t));
        if (p < kc) {
          column[p * width] = src[p];
          column[p * width + 1] = 0;
          p += 2;
        }
        for (; p < depth; p += 2) column[p * width] = column[p * width + 1] = 0;
      }
      for (std::int64_t p = 0; p < depth; p += 2)
        for (int i = n; i < width; ++i) sliver[p * width + 2 * i] = sliver[p * width + 2 * i + 1] = 0;
    } else {
      // Source rows p and p + 1, interleaved into one pair row.
      for (std::int64_t p = 0; p < depth; p += 2) {
        std::uint16_t* row = sliver + p * width;
        if (p < whole_pairs) {
          const std::uint16_t* even = x + p * ld + i0;
          const std::uint16_t* odd = even + ld;
          for (int i = 0; i < n; ++i) {
            row[2 * i] = even[i];
            row[2 * i + 1] = odd[i];
          }
        } else if (p < kc) {
          const std::uint16_t* even = x + p * ld + i0;
          for (int i = 0; i < n; ++i) {
            row[2 * i] = even[i];
            row[2 * i + 1] = 0;
          }
        } else {
          for (int i = 0; i < n; ++i) row[2 * i] = row[2 * i + 1] = 0;
        }
        for (int i = n; i < width; ++i) row[2 * i] = row[2 * i + 1] = 0;
      }
    }
  }
}

template <class V, int KM>
inline void pack_b_pairs(void* packed, const std::uint16_t* b, std::int64_t ldb, bool transpose, std::int64_t n,
                         std::int64_t kc, int nr) {
  pack_pairs<V, KM>(packed, b, ldb, transpose, n, kc, nr);
}

template <class V>
inline void pack_a_pairs(void* packed, const std::uint16_t* a, std::int64_t lda, bool transpose, std::int64_t m,
                         std::int64_t kc, int mr) {
  pack_pairs<V, 2>(packed, a, lda, !transpose, m, kc, mr);
}

#if defined(__AVX512BF16__)
// The register tile as in gemm_kernels.h's micro_tile, one pair of k per
// step: NV vectors of B (16 columns x 2) loaded, each A pair broadcast as
// one 32-bit lane, MR x NV vdpbf16ps.
template <class V, int MR, int NV>
inline void micro_tile_pairs(const GemmMacroTile& t, const std::uint16_t* a, const std::uint16_t* b, std::int64_t pairs,
                             std::int64_t row, std::int64_t col) {
  constexpr int NR = NV * V::width;
  const int rows = static_cast<int>(t.m - row < MR ? t.m - row : MR);
  for (int i = 0; i < rows; ++i)
    for (int line = 0; line < NR; line += 16) __builtin_prefetch(t.c + (row + i) * t.ldc + col + line, 1, 2);
  __m512 acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  for (std::int64_t q = 0; q < pairs; ++q) {
    const std::uint16_t* b_row = b + q * 2 * NR;
    __builtin_prefetch(b_row + gemm_kernels::kPrefetchSteps * 2 * NR, 0, 3);
    __builtin_prefetch(b_row + gemm_kernels::kPrefetchSteps * 2 * NR + 32, 0, 3);
    __m512bh bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = (__m512bh)_mm512_loadu_si512(b_row + v * 2 * V::width);
    const std::uint16_t* a_row = a + q * 2 * MR;
    for (int i = 0; i < MR; ++i) {
      std::int32_t pair;
      std::memcpy(&pair, a_row + 2 * i, sizeof pair);
      const __m512bh ai = (__m512bh)_mm512_set1_epi32(pair);
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], ai, bv[v]);
    }
  }
  V finished[MR][NV];  // a copy out of the loop's registers (see micro_tile)
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) finished[i][v] = V{acc[i][v]};
  gemm_kernels::store_tile<V, MR, NV>(t, finished, row, col);
}

template <class V, int MR, int NV>
inline void macro_kernel_pairs(const GemmMacroTile& t, const void* packed_a, const void* packed_b) {
  constexpr int NR = NV * V::width;
  const std::int64_t depth = round_up<V>(t.kc, 2);
  const std::uint16_t* a = static_cast<const std::uint16_t*>(packed_a);
  const std::uint16_t* b = static_cast<const std::uint16_t*>(packed_b);
  for (std::int64_t row = 0; row < t.m; row += MR)
    for (std::int64_t col = 0; col < t.n; col += NR)
      micro_tile_pairs<V, MR, NV>(t, a + (row / MR) * depth * MR, b + (col / NR) * depth * NR, depth / 2, row, col);
}
#endif  // __AVX512BF16__

// ---- decode: few rows of float32 A against the bf16 rows of B^T ----------

// Depth of the chunk of 4 rows of B widened at a time: 4 KiB of float32,
// which stays in L1 while the rows of A pass over it.
constexpr std::int64_t kDecodeChunk = 256;

// C[i, j] = alpha * dot(A[i, :], B^T[j, :]) (+ beta * C[i, j]) for R rows of
// A and 4 rows of B^T (rows past b_rows repeat the last and are not
// written). The bf16 rows are read once, a chunk at a time, and widened into
// a buffer in L1 (a plain loop the compiler vectorizes); the products of
// bf16 values are exact in float32 and summed in float32. While the last
// group of rows of A passes, the same chunk of the next rows of B^T is
// requested (a row is too short a stream for the hardware prefetcher).
template <class V, int R>
inline void decode_dot(float* c, std::int64_t ldc, const float* a, std::int64_t lda, const std::uint16_t* bt,
                       std::int64_t ldb, int b_rows, std::int64_t k, float alpha, float beta, const std::uint16_t* next,
                       int next_rows) {
  constexpr int W = V::width;
  alignas(64) float widened[4][kDecodeChunk];
  const std::uint16_t* rows[4];
  for (int j = 0; j < 4; ++j) rows[j] = bt + (j < b_rows ? j : b_rows - 1) * ldb;
  V acc[R][4];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < 4; ++j) acc[i][j] = V::broadcast(0.0f);
  for (std::int64_t p0 = 0; p0 < k; p0 += kDecodeChunk) {
    const std::int64_t depth = k - p0 < kDecodeChunk ? k - p0 : kDecodeChunk;
    for (int j = 0; j < next_rows; ++j)  // 32 bf16 values per cache line
      for (std::int64_t p = 0; p < depth; p += 32) __builtin_prefetch(next + j * ldb + p0 + p, 0, 3);
    for (int j = 0; j < 4; ++j)
      for (std::int64_t p = 0; p < depth; ++p) widened[j][p] = widen<V>(rows[j][p0 + p]);
    std::int64_t p = 0;
    for (; p + W <= depth; p += W) {
      V bv[4];
      for (int j = 0; j < 4; ++j) bv[j] = V::load(&widened[j][p]);
      for (int i = 0; i < R; ++i) {
        const V av = V::load(a + i * lda + p0 + p);
        for (int j = 0; j < 4; ++j) acc[i][j] = fma(av, bv[j], acc[i][j]);
      }
    }
    if (p < depth) {  // the tail: zeros past k
      const int lanes = static_cast<int>(depth - p);
      V bv[4];
      for (int j = 0; j < 4; ++j) bv[j] = V::load_partial(&widened[j][p], lanes);
      for (int i = 0; i < R; ++i) {
        const V av = V::load_partial(a + i * lda + p0 + p, lanes);
        for (int j = 0; j < 4; ++j) acc[i][j] = fma(av, bv[j], acc[i][j]);
      }
    }
  }
  // A copy for the loop below, whose run-time bound would otherwise keep
  // `acc` in memory (gemm_kernels.h's decode_dot says why).
  V finished[R][4];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < 4; ++j) finished[i][j] = acc[i][j];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < b_rows; ++j) {
      const float dot = alpha * vec_math::lane_sum(finished[i][j]);
      c[i * ldc + j] = beta == 0.0f ? dot : dot + beta * c[i * ldc + j];
    }
}

// C[0:m, col0:col1]: 4 rows of B^T at a time against groups of up to 4 rows
// of A.
template <class V>
inline void decode(const GemmBf16DecodeRange& r) {
  for (std::int64_t j = r.col0; j < r.col1; j += 4) {
    const int b_rows = r.col1 - j < 4 ? static_cast<int>(r.col1 - j) : 4;
    for (std::int64_t i = 0; i < r.m; i += 4) {
      float* c = r.c + i * r.ldc + j;
      const float* a = r.a + i * r.lda;
      const std::uint16_t* bt = r.bt + j * r.ldb;
      const bool last_group = i + 4 >= r.m;
      const std::uint16_t* next = last_group && j + 4 < r.col1 ? bt + 4 * r.ldb : nullptr;
      const int next_rows = next == nullptr ? 0 : static_cast<int>(r.col1 - j - 4 < 4 ? r.col1 - j - 4 : 4);
      switch (r.m - i < 4 ? r.m - i : 4) {
        case 1: decode_dot<V, 1>(c, r.ldc, a, r.lda, bt, r.ldb, b_rows, r.k, r.alpha, r.beta, next, next_rows); break;
        case 2: decode_dot<V, 2>(c, r.ldc, a, r.lda, bt, r.ldb, b_rows, r.k, r.alpha, r.beta, next, next_rows); break;
        case 3: decode_dot<V, 3>(c, r.ldc, a, r.lda, bt, r.ldb, b_rows, r.k, r.alpha, r.beta, next, next_rows); break;
        default: decode_dot<V, 4>(c, r.ldc, a, r.lda, bt, r.ldb, b_rows, r.k, r.alpha, r.beta, next, next_rows); break;
      }
    }
  }
}

#if defined(__AMX_TILE__) && defined(__AMX_BF16__)
// ---- AMX: a 32 x 32 block of C in four 16 x 16 tiles ----------------------
//
// Tiles 0-3 hold C (rows 0-15 / 16-31 x columns 0-15 / 16-31), 4-5 the two
// 16-row halves of the A sliver's next 32 k, 6-7 the two 16-column halves of
// the B sliver's next 16 pairs of k. A is packed by rows (a tile row is 32
// consecutive k of one row: packed[s][i][p]), B in pairs of k (pack_pairs).
constexpr int kAmxRows = 32;
constexpr int kAmxColumns = 32;
constexpr int kAmxDepth = 32;  // k per tile step

// The tile configuration (palette 1): 8 tiles of 16 rows x 64 bytes.
struct alignas(64) AmxTileConfig {
  std::uint8_t palette;
  std::uint8_t start_row;
  std::uint8_t reserved[14];
  std::uint16_t bytes_per_row[16];
  std::uint8_t rows[16];
};

template <class V>
inline void pack_a_rows(void* packed, const std::uint16_t* a, std::int64_t lda, bool transpose, std::int64_t m,
                        std::int64_t kc, int mr) {
  std::uint16_t* out = static_cast<std::uint16_t*>(packed);
  const std::int64_t depth = round_up<V>(kc, kAmxDepth);
  for (std::int64_t i0 = 0; i0 < m; i0 += mr) {
    std::uint16_t* sliver = out + (i0 / mr) * depth * mr;
    const int n = static_cast<int>(m - i0 < mr ? m - i0 : mr);
    if (!transpose) {  // op(A)(i, p) = a[i * lda + p]: row by row
      for (int i = 0; i < n; ++i)
        std::memcpy(sliver + i * depth, a + (i0 + i) * lda, static_cast<std::size_t>(kc) * sizeof(std::uint16_t));
    } else {  // op(A)(i, p) = a[p * lda + i]: source rows read front to back
      for (std::int64_t p = 0; p < kc; ++p) {
        const std::uint16_t* src = a + p * lda + i0;
        for (int i = 0; i < n; ++i) sliver[i * depth + p] = src[i];
      }
    }
    for (int i = 0; i < n; ++i)
      for (std::int64_t p = kc; p < depth; ++p) sliver[i * depth + p] = 0;
    for (int i = n; i < mr; ++i)
      for (std::int64_t p = 0; p < depth; ++p) sliver[i * depth + p] = 0;
  }
}

template <class V>
inline void macro_kernel_amx(const GemmMacroTile& t, const void* packed_a, const void* packed_b) {
  AmxTileConfig config{};
  config.palette = 1;
  for (int tile = 0; tile < 8; ++tile) {
    config.bytes_per_row[tile] = 64;
    config.rows[tile] = 16;
  }
  _tile_loadconfig(&config);
  const std::int64_t depth = round_up<V>(t.kc, kAmxDepth);
  const std::int64_t a_stride = depth * 2;                // bytes between rows of an A tile
  constexpr std::int64_t b_stride = kAmxColumns * 2 * 2;  // bytes between pairs of a B tile
  const std::uint16_t* a_all = static_cast<const std::uint16_t*>(packed_a);
  const std::uint16_t* b_all = static_cast<const std::uint16_t*>(packed_b);
  alignas(64) float block[kAmxRows][kAmxColumns];
  for (std::int64_t row = 0; row < t.m; row += kAmxRows) {
    const std::uint16_t* a = a_all + (row / kAmxRows) * depth * kAmxRows;
    for (std::int64_t col = 0; col < t.n; col += kAmxColumns) {
      const std::uint16_t* b = b_all + (col / kAmxColumns) * depth * kAmxColumns;
      // A whole block whose epilogue is plain (alpha 1; on the last pass
      // no bias, activation or pre-activation) keeps C in the tiles: loaded
      // from C on later passes, stored straight back. Any other block goes
      // through `block` and the float32 epilogue (store_tile).
      const bool whole = row + kAmxRows <= t.m && col + kAmxColumns <= t.n;
      const bool plain =
          t.alpha == 1.0f &&
          (!t.last_k || (t.bias == nullptr && t.pre_activation == nullptr && t.activation == GemmActivation::none));
      const bool direct = whole && plain && (!t.first_k || t.beta == 0.0f);
      float* c = t.c + row * t.ldc + col;
      const std::int64_t c_stride = t.ldc * static_cast<std::int64_t>(sizeof(float));
      if (direct && !t.first_k) {  // C += A B
        _tile_loadd(0, c, c_stride);
        _tile_loadd(1, c + 16, c_stride);
        _tile_loadd(2, c + 16 * t.ldc, c_stride);
        _tile_loadd(3, c + 16 * t.ldc + 16, c_stride);
      } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
      }
      for (std::int64_t p = 0; p < depth; p += kAmxDepth) {
        const std::uint16_t* b_pairs = b + p * kAmxColumns;  // pair row p / 2
        _tile_loadd(4, a + p, a_stride);
        _tile_loadd(6, b_pairs, b_stride);
        _tile_dpbf16ps(0, 4, 6);
        _tile_loadd(7, b_pairs + 32, b_stride);
        _tile_dpbf16ps(1, 4, 7);
        _tile_loadd(5, a + 16 * depth + p, a_stride);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
      if (direct) {
        _tile_stored(0, c, c_stride);
        _tile_stored(1, c + 16, c_stride);
        _tile_stored(2, c + 16 * t.ldc, c_stride);
        _tile_stored(3, c + 16 * t.ldc + 16, c_stride);
        continue;
      }
      _tile_stored(0, &block[0][0], kAmxColumns * 4);
      _tile_stored(1, &block[0][16], kAmxColumns * 4);
      _tile_stored(2, &block[16][0], kAmxColumns * 4);
      _tile_stored(3, &block[16][16], kAmxColumns * 4);
      V acc[kAmxRows][2];
      for (int i = 0; i < kAmxRows; ++i)
        for (int v = 0; v < 2; ++v) acc[i][v] = V::load(&block[i][v * 16]);
      gemm_kernels::store_tile<V, kAmxRows, 2>(t, acc, row, col);
    }
  }
  _tile_release();
}
#endif  // __AMX_TILE__ && __AMX_BF16__

}  // namespace attnkit::cpu::gemm_bf16_kernels
