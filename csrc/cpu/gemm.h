// Single-precision GEMM, BLIS-style: C = alpha * op(A) op(B) + beta * C, then an
// optional bias (one value per column, broadcast down the rows) and activation.
// Row-major throughout; op(X) is X or its transpose.
//
// The driver (gemm.cpp, baseline ISA) blocks the problem for the caches it
// finds on the machine (gemm_blocking_for), packs panels of A and B into
// contiguous zero-padded buffers, and splits the work over threads. The
// driver knows a kernel only by its register tile (MR x NR) and its packing:
// each ISA's table (GemmKernels, below) supplies the macro kernel (the loops
// over register tiles of one packed A block times one packed B panel, with
// the micro-kernel and the epilogue inlined, gemm_kernels.h), the packing for
// its tile, and the decode path.
#pragma once

#include <cstdint>
#include <functional>

#include "core/cpu_features.h"

namespace attnkit::cpu {

enum class GemmActivation { none, relu, gelu, gelu_tanh };

struct GemmEpilogue {
  const float* bias = nullptr;  // [N], added to every row of C
  GemmActivation activation = GemmActivation::none;
  float* pre_activation = nullptr;  // [M, N] (row stride ldc): C before the activation, for backward
};

// C[m, n] (row stride ldc) = alpha * op(A)[m, k] op(B)[k, n] + beta * C, then the
// epilogue. A is [m, k] (or [k, m] when transposed) with row stride lda, B is
// [k, n] (or [n, k]) with row stride ldb. beta = 0 never reads C (NaN in C
// does not leak). Multithreaded unless called from inside a parallel region.
void gemm(float* c, std::int64_t ldc, const float* a, std::int64_t lda, bool transpose_a, const float* b,
          std::int64_t ldb, bool transpose_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, float beta,
          const GemmEpilogue& epilogue = {});

// `batch` independent products. The i-th reads A at a + offsets_a[i] and B at
// b + offsets_b[i] (element offsets, so a repeated offset broadcasts an
// operand) and writes C at c + i * stride_c (and the pre-activation likewise).
void gemm_batched(std::int64_t batch, float* c, std::int64_t ldc, std::int64_t stride_c, const float* a,
                  std::int64_t lda, const std::int64_t* offsets_a, bool transpose_a, const float* b, std::int64_t ldb,
                  const std::int64_t* offsets_b, bool transpose_b, std::int64_t m, std::int64_t n, std::int64_t k,
                  float alpha, float beta, const GemmEpilogue& epilogue = {});

// gemm with bfloat16 A and B (their bits, std::uint16_t): the products and
// their sums in float32, C float32. The active ISA's bf16 tier (GemmBf16Kernels)
// runs it: AMX tiles, AVX512-BF16 dot products, or, anywhere else, A and B
// widened to float32 as they are packed and the float32 kernels (exact
// products, float32 sums: what float32 gemm gives on the same values).
void gemm_bf16(float* c, std::int64_t ldc, const std::uint16_t* a, std::int64_t lda, bool transpose_a,
               const std::uint16_t* b, std::int64_t ldb, bool transpose_b, std::int64_t m, std::int64_t n,
               std::int64_t k, float alpha, float beta, const GemmEpilogue& epilogue = {});
void gemm_bf16_batched(std::int64_t batch, float* c, std::int64_t ldc, std::int64_t stride_c, const std::uint16_t* a,
                       std::int64_t lda, const std::int64_t* offsets_a, bool transpose_a, const std::uint16_t* b,
                       std::int64_t ldb, const std::int64_t* offsets_b, bool transpose_b, std::int64_t m,
                       std::int64_t n, std::int64_t k, float alpha, float beta, const GemmEpilogue& epilogue = {});

// bias_grad[n] = sum over rows r of grad[r, n] (rows summed in order, so the
// result does not depend on the thread count).
void column_sum(float* out, const float* grad, std::int64_t rows, std::int64_t n);

// The split of the decode paths (few rows; B, or the int8 weight, read once
// and unpacked): the columns [0, n) of C[m, n] (row stride ldc) in units of
// `unit` columns, over threads when `parallel`. Each part runs
// decode(col0, col1), which writes C[0:m, col0:col1], then the epilogue on
// those columns.
void decode_by_columns(float* c, std::int64_t ldc, std::int64_t m, std::int64_t n, std::int64_t unit, bool parallel,
                       const GemmEpilogue& epilogue,
                       const std::function<void(std::int64_t col0, std::int64_t col1)>& decode);

// ---- what each ISA provides ------------------------------------------------

// One packed A block times one packed B panel, written into C.
struct GemmMacroTile {
  const float* packed_a;  // ceil(m / MR) slivers, each kc x MR (k-major), zero-padded
  const float* packed_b;  // ceil(n / NR) slivers, each kc x NR (k-major), zero-padded
  float* c;               // C[0, 0] of this block; row stride ldc
  std::int64_t ldc;
  std::int64_t m, n, kc;
  float alpha;
  float beta;  // used when first_k: C = alpha*AB + beta*C; later k blocks add
  bool first_k;
  bool last_k;        // apply the epilogue
  const float* bias;  // offset to this block's first column, or null
  GemmActivation activation;
  float* pre_activation;  // offset to this block, row stride ldc, or null
};

// The decode path (few rows of A, not transposed): C[0:m, col0:col1] =
// alpha * A B + beta * C, B read once and unpacked; the caller applies the
// bias/activation epilogue afterwards with epilogue_rows.
struct GemmDecodeRange {
  float* c;
  std::int64_t ldc;
  const float* a;
  std::int64_t lda;
  const float* b;
  std::int64_t ldb;
  bool transpose_b;
  std::int64_t m, k;
  std::int64_t col0, col1;
  float alpha, beta;
};

// The bf16 decode path (few rows of A, B transposed: a Linear's weight
// [n, k]): C[0:m, col0:col1] = alpha * A B^T + beta * C with A already
// widened to float32 and B's bf16 rows read once, widened in L1 as they
// stream; the caller applies the epilogue.
struct GemmBf16DecodeRange {
  float* c;
  std::int64_t ldc;
  const float* a;
  std::int64_t lda;
  const std::uint16_t* bt;
  std::int64_t ldb;
  std::int64_t m, k;
  std::int64_t col0, col1;
  float alpha, beta;
};

struct GemmKernelShape {
  int mr;  // rows of a register tile
  int nr;  // columns of a register tile
};

// Cache blocks: the driver packs MC x KC blocks of A and KC x NC panels of B.
struct GemmBlocking {
  std::int64_t mc, kc, nc;
};

// The cache blocks for a register tile of `shape` on a CPU with `caches`
// (gemm.cpp says how they follow from the cache sizes) when packed elements
// take `element_bytes` each (4 for float32, 2 for bf16). MC and NC are whole
// register tiles.
GemmBlocking gemm_blocking_for(const CpuCaches& caches, GemmKernelShape shape, int element_bytes = 4);

// What gemm uses now: the active ISA's register tile and the cache blocks.
struct GemmConfig {
  GemmKernelShape shape;
  GemmBlocking blocking;
  bool overridden;  // the blocks come from set_gemm_blocking or ATTNKIT_GEMM_BLOCKING="MC,KC,NC"
};
GemmConfig gemm_config();
// The same for the bf16 GEMM (gemm_bf16): its tier's tile and blocks.
GemmConfig gemm_bf16_config();
// Forces the cache blocks, for measuring and testing (MC and NC are rounded
// up to whole register tiles); {0, 0, 0} returns to the blocks chosen from
// the caches. ValueError unless all three are positive, or all zero.
void set_gemm_blocking(GemmBlocking blocking);

// The GEMM of one ISA (cpu/dispatch.h): its register tile, the macro kernel,
// the packing for its tile, and the decode path. Kernels
// that run their own tiles (attention) pack with pack_a / pack_b for `shape`
// and call macro_kernel directly, packing an operand once when they reuse it
// across many products.
struct GemmKernels {
  GemmKernelShape shape;
  // One packed A block times one packed B panel, written into C.
  void (*macro_kernel)(const GemmMacroTile& tile);
  // Packs op(A)[0:m, 0:kc] into ceil(m/mr) slivers of kc x mr (k-major),
  // zero-padding the rows past m.
  void (*pack_a)(float* packed, const float* a, std::int64_t lda, bool transpose, std::int64_t m, std::int64_t kc,
                 int mr);
  // Packs op(B)[0:kc, 0:n] into ceil(n/nr) slivers of kc x nr (k-major),
  // zero-padding the columns past n.
  void (*pack_b)(float* packed, const float* b, std::int64_t ldb, bool transpose, std::int64_t n, std::int64_t kc,
                 int nr);
  void (*decode)(const GemmDecodeRange& range);
  // The bias/activation epilogue over C[0:m, 0:n] (after decode).
  void (*epilogue_rows)(float* c, std::int64_t ldc, std::int64_t m, std::int64_t n, const float* bias,
                        GemmActivation activation, float* pre_activation);
};

// The bf16 GEMM of one ISA, run by the same driver as float32 (gemm.cpp): a
// register tile, the packing of bf16 A and B into the layout its macro kernel
// reads, and that kernel. The packed depth of a sliver is kc rounded up to
// k_multiple (zeros past kc): AMX tiles take k in steps of 32, the dot
// products of AVX512-BF16 in pairs.
struct GemmBf16Kernels {
  GemmKernelShape shape;
  int k_multiple;
  int packed_bytes;  // bytes per packed element: 2 (bf16), or 4 when packing widens to float32
  // ceil(m / mr) slivers of op(A)[0:m, 0:kc], ceil(n / nr) of op(B)[0:kc, 0:n],
  // each a whole sliver of round_up(kc, k_multiple) x mr (x nr) elements.
  void (*pack_a)(void* packed, const std::uint16_t* a, std::int64_t lda, bool transpose, std::int64_t m,
                 std::int64_t kc, int mr);
  void (*pack_b)(void* packed, const std::uint16_t* b, std::int64_t ldb, bool transpose, std::int64_t n,
                 std::int64_t kc, int nr);
  // As GemmKernels::macro_kernel, on the packed operands given apart (the
  // tile's packed_a and packed_b are unused).
  void (*macro_kernel)(const GemmMacroTile& tile, const void* packed_a, const void* packed_b);
  // The decode path (exact products and float32 sums on every tier).
  void (*decode)(const GemmBf16DecodeRange& range);
};

}  // namespace attnkit::cpu
