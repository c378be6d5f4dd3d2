// The GEMM driver: cache blocking, packing and threading (baseline ISA). The
// loop nest is the one of the BLIS papers (Van Zee & van de Geijn, 2015):
//
//   for jc over N in steps of NC      B panel (KC x NC) lives in L3
//     for pc over K in steps of KC    pack the B panel (threads share it)
//       for ic over M in steps of MC  pack an A block (MC x KC), kept in L2
//         macro kernel: for each NR sliver of B (in L1), each MR sliver of A
//
// Threads split the ic loop when M has enough rows (each core packs its own A
// block into its own L2 and all read the shared B panel), and the columns of
// the panel when M is small.
#include "cpu/gemm.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "core/allocator.h"
#include "core/threading.h"
#include "cpu/dispatch.h"

namespace attnkit::cpu {

namespace {

// ATTNKIT_GEMM_BLOCKING="MC,KC,NC" overrides the ISA's cache blocks, for
// measuring only.
GemmBlocking blocking_override(const char* env, GemmBlocking fallback) {
  if (env == nullptr) return fallback;
  long long mc = 0, kc = 0, nc = 0;
  if (std::sscanf(env, "%lld,%lld,%lld", &mc, &kc, &nc) != 3 || mc <= 0 || kc <= 0 || nc <= 0) return fallback;
  return {mc, kc, nc};
}

std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
  return (a + b - 1) / b;
}
std::int64_t round_up(std::int64_t a, std::int64_t b) {
  return ceil_div(a, b) * b;
}

// Below this many multiply-adds a product runs on one thread: a parallel
// region costs a few microseconds, about 1e5 FMAs on one core.
constexpr double kParallelWorkThreshold = 2e5;

// Up to this many rows of A, a product is bound by streaming B and takes the
// decode path (the shapes of generating one token per sequence of a batch).
constexpr std::int64_t kDecodeRows = 16;

}  // namespace

void gemm(float* c, std::int64_t ldc, const float* a, std::int64_t lda, bool transpose_a, const float* b,
          std::int64_t ldb, bool transpose_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, float beta,
          const GemmEpilogue& epilogue) {
  if (m <= 0 || n <= 0) return;
  const GemmKernels& kernel = *active_kernels().gemm;
  const int mr = kernel.shape.mr;
  const int nr = kernel.shape.nr;

  GemmMacroTile base{};
  base.ldc = ldc;
  base.alpha = alpha;
  base.beta = beta;
  base.activation = epilogue.activation;

  if (k <= 0) {  // C = beta * C, then the epilogue: one pass with empty slivers
    base.c = c;
    base.m = m;
    base.n = n;
    base.kc = 0;
    base.first_k = base.last_k = true;
    base.bias = epilogue.bias;
    base.pre_activation = epilogue.pre_activation;
    kernel.macro_kernel(base);
    return;
  }

  int threads = omp_in_parallel() ? 1 : get_num_threads();
  if (static_cast<double>(m) * n * k < kParallelWorkThreshold) threads = 1;

  if (m <= kDecodeRows && !transpose_a) {
    // Bound by reading B: no packing; threads take column ranges (whole
    // vectors, or groups of 4 rows of a transposed B), then the epilogue.
    const std::int64_t unit = transpose_b ? 4 : 64;
    GemmDecodeRange range{c, ldc, a, lda, b, ldb, transpose_b, m, k, 0, 0, alpha, beta};
    auto run = [&](std::int64_t u0, std::int64_t u1) {
      GemmDecodeRange part = range;
      part.col0 = u0 * unit;
      part.col1 = std::min(n, u1 * unit);
      kernel.decode(part);
      kernel.epilogue_rows(c + part.col0, ldc, m, part.col1 - part.col0,
                           epilogue.bias ? epilogue.bias + part.col0 : nullptr, epilogue.activation,
                           epilogue.pre_activation ? epilogue.pre_activation + part.col0 : nullptr);
    };
    const std::int64_t units = ceil_div(n, unit);
    if (threads > 1) parallel_for(units, 1, run);
    else run(0, units);
    return;
  }

  // Each thread computes one band of C on its own, start to finish: a band of
  // rows when M has enough of them (each core packs its A blocks into its own
  // L2), else a band of columns. A thread packs its own copy of each B panel,
  // so nothing is shared and nothing waits inside a product: for rows, that
  // packs B once per thread, O(K N) copies against O(M N K) FMAs. Bands are
  // equal to within one register tile, and blocked by MC rows inside.
  // Splitting rows makes every thread pack all of B (K x N floats), splitting
  // columns all of A (M x K): split the longer side, so the smaller operand
  // is the one packed twice (weight gradients, M = in_features and K = tokens,
  // are often wider than tall).
  const bool rows_enough = m >= static_cast<std::int64_t>(threads) * mr * 4;
  const bool columns_enough = n >= static_cast<std::int64_t>(threads) * nr * 4;
  const bool split_rows = rows_enough && (m >= n || !columns_enough);
  // The override is read once: gemm runs thousands of times a step.
  static const char* const blocking_text = std::getenv("ATTNKIT_GEMM_BLOCKING");
  const GemmBlocking blocking = blocking_override(blocking_text, kernel.blocking);
  const std::int64_t mc = std::min(round_up(blocking.mc, mr), round_up(m, mr));
  const std::int64_t kc_max = std::min(blocking.kc, k);
  const std::int64_t nc_max = std::min(blocking.nc, n);

  auto run_band = [&](std::int64_t t) {
    std::int64_t row_begin = 0, row_end = m, col_begin = 0, col_end = n;
    if (split_rows) {
      const std::int64_t tiles = ceil_div(m, mr);
      row_begin = std::min(m, tiles * t / threads * mr);
      row_end = std::min(m, tiles * (t + 1) / threads * mr);
    } else {
      const std::int64_t slivers = ceil_div(n, nr);
      col_begin = std::min(n, slivers * t / threads * nr);
      col_end = std::min(n, slivers * (t + 1) / threads * nr);
    }
    if (row_begin >= row_end || col_begin >= col_end) return;
    ScratchBuffer packed_b(static_cast<std::size_t>(kc_max * round_up(nc_max, nr)));
    ScratchBuffer packed_a(static_cast<std::size_t>(mc * kc_max));
    for (std::int64_t jc = col_begin; jc < col_end; jc += nc_max) {
      const std::int64_t nc = std::min(nc_max, col_end - jc);
      for (std::int64_t pc = 0; pc < k; pc += kc_max) {
        const std::int64_t kc = std::min(kc_max, k - pc);
        const float* b_block = transpose_b ? b + jc * ldb + pc : b + pc * ldb + jc;
        kernel.pack_b(packed_b.data(), b_block, ldb, transpose_b, nc, kc, nr);
        for (std::int64_t row0 = row_begin; row0 < row_end; row0 += mc) {
          const std::int64_t rows = std::min(mc, row_end - row0);
          const float* a_block = transpose_a ? a + pc * lda + row0 : a + row0 * lda + pc;
          kernel.pack_a(packed_a.data(), a_block, lda, transpose_a, rows, kc, mr);
          GemmMacroTile tile = base;
          tile.packed_a = packed_a.data();
          tile.packed_b = packed_b.data();
          tile.c = c + row0 * ldc + jc;
          tile.m = rows;
          tile.n = nc;
          tile.kc = kc;
          tile.first_k = pc == 0;
          tile.last_k = pc + kc >= k;
          tile.bias = epilogue.bias ? epilogue.bias + jc : nullptr;
          tile.pre_activation = epilogue.pre_activation ? epilogue.pre_activation + row0 * ldc + jc : nullptr;
          kernel.macro_kernel(tile);
        }
      }
    }
  };
  if (threads > 1) {
    parallel_for(threads, 1, [&](std::int64_t t0, std::int64_t t1) {
      for (std::int64_t t = t0; t < t1; ++t) run_band(t);
    });
  } else {
    run_band(0);
  }
}

void gemm_batched(std::int64_t batch, float* c, std::int64_t ldc, std::int64_t stride_c, const float* a,
                  std::int64_t lda, const std::int64_t* offsets_a, bool transpose_a, const float* b, std::int64_t ldb,
                  const std::int64_t* offsets_b, bool transpose_b, std::int64_t m, std::int64_t n, std::int64_t k,
                  float alpha, float beta, const GemmEpilogue& epilogue) {
  auto one = [&](std::int64_t i) {
    GemmEpilogue e = epilogue;
    if (e.pre_activation) e.pre_activation += i * stride_c;
    gemm(c + i * stride_c, ldc, a + offsets_a[i], lda, transpose_a, b + offsets_b[i], ldb, transpose_b, m, n, k, alpha,
         beta, e);
  };
  // With at least as many products as threads, give each thread whole
  // products (no synchronization inside them); otherwise thread each product.
  const int threads = omp_in_parallel() ? 1 : get_num_threads();
  if (batch >= threads && threads > 1) {
    parallel_for(batch, 1, [&](std::int64_t i0, std::int64_t i1) {
      for (std::int64_t i = i0; i < i1; ++i) one(i);
    });
  } else {
    for (std::int64_t i = 0; i < batch; ++i) one(i);
  }
}

void column_sum(float* out, const float* grad, std::int64_t rows, std::int64_t n) {
  // Threads own disjoint column ranges (whole cache lines) and add the rows in
  // order: each column is summed the same way for any thread count.
  constexpr std::int64_t kColumns = 16;
  parallel_for(ceil_div(n, kColumns), std::max<std::int64_t>(1, 4096 / std::max<std::int64_t>(rows, 1)),
               [&](std::int64_t b0, std::int64_t b1) {
                 const std::int64_t j0 = b0 * kColumns;
                 const std::int64_t j1 = std::min(n, b1 * kColumns);
                 for (std::int64_t j = j0; j < j1; ++j) out[j] = 0.0f;
                 for (std::int64_t r = 0; r < rows; ++r) {
                   const float* row = grad + r * n;
                   for (std::int64_t j = j0; j < j1; ++j) out[j] += row[j];
                 }
               });
}

}  // namespace attnkit::cpu
