// The GEMM driver: cache blocking, packing and threading (baseline ISA). The
// loop nest is the one of the BLIS papers (Van Zee & van de Geijn, 2015), for
// a row-major C:
//
//   for jc over N in steps of NC      B panel (KC x NC), kept in L2
//     for pc over K in steps of KC    pack the B panel (threads share it)
//       for ic over M in steps of MC  pack an A block (MC x KC)
//         macro kernel: for each MR sliver of A (in L1), each NR sliver of B
//
// Threads split the ic loop when M has enough rows: they pack each B panel
// together (a share of its slivers each), wait for one another, and each
// runs its own rows against the whole panel, packing its own A blocks into
// its own L2. When M is small they split the columns instead, each packing
// its own part of B.
#include "cpu/gemm.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/allocator.h"
#include "core/errors.h"
#include "core/threading.h"
#include "cpu/convert.h"
#include "cpu/dispatch.h"

namespace attnkit::cpu {

namespace {

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

// The override of the cache blocks (set_gemm_blocking), zero when none; read
// once per product.
std::atomic<std::int64_t> g_override_mc{0}, g_override_kc{0}, g_override_nc{0};

// ATTNKIT_GEMM_BLOCKING="MC,KC,NC" sets the override when the module loads.
bool override_from_environment() {
  const char* text = std::getenv("ATTNKIT_GEMM_BLOCKING");
  long long mc = 0, kc = 0, nc = 0;
  if (text == nullptr || std::sscanf(text, "%lld,%lld,%lld", &mc, &kc, &nc) != 3 || mc <= 0 || kc <= 0 || nc <= 0)
    return false;
  g_override_mc = mc;
  g_override_kc = kc;
  g_override_nc = nc;
  return true;
}
const bool g_environment_override = override_from_environment();

GemmBlocking active_blocking(GemmKernelShape shape, bool* overridden, int element_bytes = 4) {
  const GemmBlocking forced{g_override_mc.load(std::memory_order_relaxed),
                            g_override_kc.load(std::memory_order_relaxed),
                            g_override_nc.load(std::memory_order_relaxed)};
  *overridden = forced.mc > 0 && forced.kc > 0 && forced.nc > 0;
  if (*overridden) return {round_up(forced.mc, shape.mr), forced.kc, round_up(forced.nc, shape.nr)};
  return gemm_blocking_for(cpu_caches(), shape, element_bytes);
}

// The float32 table seen as the blocked loop nest (blocked_gemm) sees a
// kernel: packing into untyped buffers, the packed operands beside the tile.
struct Float32Blocked {
  const GemmKernels& kernel;
  GemmKernelShape shape;
  int k_multiple;
  int packed_bytes;
  void pack_a(void* packed, const float* a, std::int64_t lda, bool transpose, std::int64_t m, std::int64_t kc,
              int mr) const {
    kernel.pack_a(static_cast<float*>(packed), a, lda, transpose, m, kc, mr);
  }
  void pack_b(void* packed, const float* b, std::int64_t ldb, bool transpose, std::int64_t n, std::int64_t kc,
              int nr) const {
    kernel.pack_b(static_cast<float*>(packed), b, ldb, transpose, n, kc, nr);
  }
  void macro_kernel(const GemmMacroTile& tile, const void* packed_a, const void* packed_b) const {
    GemmMacroTile t = tile;
    t.packed_a = static_cast<const float*>(packed_a);
    t.packed_b = static_cast<const float*>(packed_b);
    kernel.macro_kernel(t);
  }
};

// The blocked loop nest (see the top of this file) for a kernel with inputs
// of type In: GemmBf16Kernels, or Float32Blocked for float32.
template <class In, class Kernel>
void blocked_gemm(const Kernel& kernel, float* c, std::int64_t ldc, const In* a, std::int64_t lda, bool transpose_a,
                  const In* b, std::int64_t ldb, bool transpose_b, std::int64_t m, std::int64_t n, std::int64_t k,
                  float alpha, float beta, const GemmEpilogue& epilogue, int threads) {
  const int mr = kernel.shape.mr;
  const int nr = kernel.shape.nr;
  GemmMacroTile base{};
  base.ldc = ldc;
  base.alpha = alpha;
  base.beta = beta;
  base.activation = epilogue.activation;

  bool overridden = false;
  const GemmBlocking blocking = active_blocking(kernel.shape, &overridden, kernel.packed_bytes);
  // K in passes of equal depth: a short last pass would pay a full trip of C
  // through the caches for a few FMAs. Each pass but the last is a whole
  // number of the kernel's k steps, so only the last one is padded.
  const std::int64_t kc_max = round_up(ceil_div(k, ceil_div(k, blocking.kc)), kernel.k_multiple);
  const std::int64_t nc_max = std::min(blocking.nc, round_up(n, nr));

  // Rows when M has enough of them for every thread; else columns. Split by
  // rows, the threads share the packing of B (each packs a share of each
  // panel, then all wait for the panel to be whole) and pack their own A
  // blocks; split by columns, each thread packs its own part of B and all of
  // A, which is small then.
  const bool rows_enough = m >= static_cast<std::int64_t>(threads) * mr * 4;
  const bool columns_enough = n >= static_cast<std::int64_t>(threads) * nr * 4;
  const bool split_rows = threads == 1 || rows_enough || !columns_enough;
  const std::int64_t tiles = ceil_div(m, mr);
  const std::int64_t slivers = ceil_div(n, nr);
  // The widest band of rows and columns a thread gets, and its A blocks: as
  // many blocks for every thread (they meet at the panel's barriers), each at
  // most MC rows.
  const std::int64_t band_rows = split_rows ? ceil_div(tiles, threads) * mr : round_up(m, mr);
  const std::int64_t band_columns = split_rows ? round_up(n, nr) : ceil_div(slivers, threads) * nr;
  const std::int64_t row_blocks = ceil_div(band_rows, std::min(blocking.mc, band_rows));
  const std::int64_t mc = round_up(ceil_div(band_rows, row_blocks), mr);
  const std::int64_t bytes = kernel.packed_bytes;
  const std::int64_t panel_bytes = kc_max * std::min(nc_max, band_columns) * bytes;

  // Every buffer is allocated before the threads start: nothing inside the
  // region may throw, or the others would wait at a barrier forever.
  const std::int64_t a_block_bytes = mc * kc_max * bytes;
  ScratchBuffer packed_a(static_cast<std::size_t>(threads * a_block_bytes / 4));
  ScratchBuffer packed_b(static_cast<std::size_t>((split_rows ? 1 : threads) * panel_bytes / 4));
  SpinBarrier barrier(threads);

  // The loop nest: for each pass over K, each A block of the thread's rows
  // is packed once; the B panels of the thread's columns pass it one by one
  // (packed once per A block: with MC from the L3, usually once).
  run_on_threads(threads, [&](int t, int nt) {
    const bool shared = split_rows && nt > 1;
    std::int64_t row_begin = 0, row_end = m, col_begin = 0, col_end = n;
    if (split_rows) {
      row_begin = std::min(m, tiles * t / nt * mr);
      row_end = std::min(m, tiles * (t + 1) / nt * mr);
    } else {
      col_begin = std::min(n, slivers * t / nt * nr);
      col_end = std::min(n, slivers * (t + 1) / nt * nr);
    }
    char* own_a = reinterpret_cast<char*>(packed_a.data()) + t * a_block_bytes;
    char* panel = reinterpret_cast<char*>(packed_b.data()) + (split_rows ? 0 : t * panel_bytes);
    for (std::int64_t pc = 0; pc < k; pc += kc_max) {
      const std::int64_t kc = std::min(kc_max, k - pc);
      // A sliver's packed depth (kc, rounded up to whole k steps).
      const std::int64_t kc_packed = round_up(kc, kernel.k_multiple);
      for (std::int64_t block = 0; block < row_blocks; ++block) {
        const std::int64_t row0 = std::min(row_end, row_begin + block * mc);
        const std::int64_t rows = std::min(mc, row_end - row0);
        if (rows > 0) {
          const In* a_block = transpose_a ? a + pc * lda + row0 : a + row0 * lda + pc;
          kernel.pack_a(own_a, a_block, lda, transpose_a, rows, kc, mr);
        }
        for (std::int64_t jc = col_begin; jc < col_end; jc += nc_max) {
          const std::int64_t nc = std::min(nc_max, col_end - jc);
          // This thread's slivers of the panel: all of them, or its share.
          std::int64_t col0 = 0, col1 = nc;
          if (shared) {
            const std::int64_t panel_slivers = ceil_div(nc, nr);
            col0 = std::min(nc, panel_slivers * t / nt * nr);
            col1 = std::min(nc, panel_slivers * (t + 1) / nt * nr);
          }
          if (col0 < col1) {
            const In* b_block = transpose_b ? b + (jc + col0) * ldb + pc : b + pc * ldb + jc + col0;
            kernel.pack_b(panel + (col0 / nr) * kc_packed * nr * bytes, b_block, ldb, transpose_b, col1 - col0, kc, nr);
          }
          if (shared) barrier.wait();  // the panel is whole
          if (rows > 0) {
            GemmMacroTile tile = base;
            tile.c = c + row0 * ldc + jc;
            tile.m = rows;
            tile.n = nc;
            tile.kc = kc;
            tile.first_k = pc == 0;
            tile.last_k = pc + kc >= k;
            tile.bias = epilogue.bias ? epilogue.bias + jc : nullptr;
            tile.pre_activation = epilogue.pre_activation ? epilogue.pre_activation + row0 * ldc + jc : nullptr;
            kernel.macro_kernel(tile, own_a, panel);
          }
          if (shared) barrier.wait();  // everyone is done with the panel
        }
      }
    }
  });
}

// C = beta * C, then the epilogue, for k = 0: one pass of the macro kernel
// with empty slivers.
template <class Kernel>
void gemm_empty_k(const Kernel& kernel, float* c, std::int64_t ldc, std::int64_t m, std::int64_t n, float beta,
                  const GemmEpilogue& epilogue) {
  GemmMacroTile tile{};
  tile.c = c;
  tile.ldc = ldc;
  tile.m = m;
  tile.n = n;
  tile.kc = 0;
  tile.alpha = 1.0f;
  tile.beta = beta;
  tile.first_k = tile.last_k = true;
  tile.bias = epilogue.bias;
  tile.activation = epilogue.activation;
  tile.pre_activation = epilogue.pre_activation;
  kernel.macro_kernel(tile, nullptr, nullptr);
}

int threads_for(std::int64_t m, std::int64_t n, std::int64_t k) {
  if (in_parallel_region()) return 1;
  if (static_cast<double>(m) * n * k < kParallelWorkThreshold) return 1;
  return get_num_threads();
}

}  // namespace

// The blocks follow from the cache sizes and the register tile, after the
// analytical model of Low et al. ("Analytical modeling is enough for
// high-performance BLIS", 2016) with the roles of A and B swapped for a
// row-major C. The macro kernel walks C one row strip at a time: one A sliver
// (MR x KC) is reused by every B sliver (KC x NR) of the panel.
//  - KC: the A sliver stays in L1 (half of the L1D, the rest for the B sliver
//    streaming in and the C tile). A deeper pass saves trips of the C tile
//    through the caches, but little past 512: there a tile's update is
//    already under 1% of its FMAs. KC also leaves room for a panel at least
//    8 slivers wide (below).
//  - NC: the B panel (KC x NC) stays in the core's L2 (half of it, per core
//    when cores share one) while the A slivers of the block pass it; the
//    threads share one packed panel, each core reading it into its own L2.
//  - MC: the A block (MC x KC) is packed once per pass over K and each of its
//    slivers comes into L1 once per panel, from the L3 (half of the core's
//    share of it; the L2 without an L3). Every panel is packed once per A
//    block, so a block as tall as the thread's rows packs B only once.
// Measured on one core of the Xeon this was written on (48 KiB L1D, 2 MiB
// L2), 1024^3 and 2048 x 768 x 3072: 142-143 GFLOP/s with KC = 512 and
// NC = 512 as chosen here, 137-140 with the (MC, KC, NC) = (144, 384, 4096)
// fitted by hand on a Zen 4 before.
GemmBlocking gemm_blocking_for(const CpuCaches& caches, GemmKernelShape shape, int element_bytes) {
  const std::int64_t kFloat = std::max(element_bytes, 1);
  constexpr std::int64_t kDeepestPass = 512;
  constexpr std::int64_t kPanelSlivers = 8;
  const std::int64_t l1 = std::max<std::int64_t>(caches.l1d_bytes, 4096);
  const std::int64_t l2 = std::max<std::int64_t>(caches.l2_bytes / std::max(caches.l2_sharing, 1), 2 * l1);
  std::int64_t kc =
      std::min({l1 / 2 / (shape.mr * kFloat), l2 / 2 / (kPanelSlivers * shape.nr * kFloat), kDeepestPass});
  kc = std::max<std::int64_t>(kc / 16 * 16, 16);  // whole cache lines of a packed row of A
  const std::int64_t nc = std::max<std::int64_t>(l2 / 2 / (kc * kFloat) / shape.nr, 1) * shape.nr;
  const std::int64_t l3 = caches.l3_bytes > 0 ? caches.l3_bytes / std::max(caches.l3_sharing, 1) : l2;
  const std::int64_t mc = std::max<std::int64_t>(l3 / 2 / (kc * kFloat) / shape.mr, 1) * shape.mr;
  return {mc, kc, nc};
}

GemmConfig gemm_config() {
  const GemmKernels& kernel = *active_kernels().gemm;
  GemmConfig config{kernel.shape, {}, false};
  config.blocking = active_blocking(kernel.shape, &config.overridden);
  return config;
}

GemmConfig gemm_bf16_config() {
  const GemmBf16Kernels& kernel = *active_kernels().gemm_bf16;
  GemmConfig config{kernel.shape, {}, false};
  config.blocking = active_blocking(kernel.shape, &config.overridden, kernel.packed_bytes);
  return config;
}

void set_gemm_blocking(GemmBlocking blocking) {
  const bool all_zero = blocking.mc == 0 && blocking.kc == 0 && blocking.nc == 0;
  const bool all_positive = blocking.mc > 0 && blocking.kc > 0 && blocking.nc > 0;
  if (!all_zero && !all_positive)
    throw_value_error(
        "set_gemm_blocking", "blocking", "three positive block sizes (mc, kc, nc), or none",
        std::to_string(blocking.mc) + ", " + std::to_string(blocking.kc) + ", " + std::to_string(blocking.nc));
  constexpr std::int64_t kLargest = std::int64_t(1) << 20;  // keeps the packed buffers' sizes far from overflow
  g_override_mc = std::min(blocking.mc, kLargest);
  g_override_kc = std::min(blocking.kc, kLargest);
  g_override_nc = std::min(blocking.nc, kLargest);
}

void gemm(float* c, std::int64_t ldc, const float* a, std::int64_t lda, bool transpose_a, const float* b,
          std::int64_t ldb, bool transpose_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, float beta,
          const GemmEpilogue& epilogue) {
  if (m <= 0 || n <= 0) return;
  const GemmKernels& kernel = *active_kernels().gemm;
  const Float32Blocked blocked{kernel, kernel.shape, 1, sizeof(float)};
  if (k <= 0) return gemm_empty_k(blocked, c, ldc, m, n, beta, epilogue);
  const int threads = threads_for(m, n, k);

  if (m <= kDecodeRows && !transpose_a) {
    // Bound by reading B: no packing; threads take column ranges (whole
    // vectors, or groups of 4 rows of a transposed B), then the epilogue.
    const std::int64_t unit = transpose_b ? 4 : 64;
    const GemmDecodeRange range{c, ldc, a, lda, b, ldb, transpose_b, m, k, 0, 0, alpha, beta};
    decode_by_columns(c, ldc, m, n, unit, threads > 1, epilogue, [&](std::int64_t col0, std::int64_t col1) {
      GemmDecodeRange part = range;
      part.col0 = col0;
      part.col1 = col1;
      kernel.decode(part);
    });
    return;
  }
  blocked_gemm(blocked, c, ldc, a, lda, transpose_a, b, ldb, transpose_b, m, n, k, alpha, beta, epilogue, threads);
}

void decode_by_columns(float* c, std::int64_t ldc, std::int64_t m, std::int64_t n, std::int64_t unit, bool parallel,
                       const GemmEpilogue& epilogue,
                       const std::function<void(std::int64_t col0, std::int64_t col1)>& decode) {
  const GemmKernels& kernel = *active_kernels().gemm;
  auto run = [&](std::int64_t u0, std::int64_t u1) {
    const std::int64_t col0 = u0 * unit, col1 = std::min(n, u1 * unit);
    decode(col0, col1);
    kernel.epilogue_rows(c + col0, ldc, m, col1 - col0, epilogue.bias ? epilogue.bias + col0 : nullptr,
                         epilogue.activation, epilogue.pre_activation ? epilogue.pre_activation + col0 : nullptr);
  };
  const std::int64_t units = ceil_div(n, unit);
  if (parallel) parallel_for(units, 1, run);
  else run(0, units);
}

void gemm_bf16(float* c, std::int64_t ldc, const std::uint16_t* a, std::int64_t lda, bool transpose_a,
               const std::uint16_t* b, std::int64_t ldb, bool transpose_b, std::int64_t m, std::int64_t n,
               std::int64_t k, float alpha, float beta, const GemmEpilogue& epilogue) {
  if (m <= 0 || n <= 0) return;
  const GemmBf16Kernels& kernel = *active_kernels().gemm_bf16;
  if (k <= 0) return gemm_empty_k(kernel, c, ldc, m, n, beta, epilogue);
  if (m <= kDecodeRows && !transpose_a && transpose_b) {
    // Decode (a Linear's few rows): bound by reading B, so B's bf16 rows are
    // read once and unpacked; A (m x k, small) is widened once here. Threads
    // take groups of 4 rows of B, then the float32 epilogue.
    std::vector<float> a_widened(static_cast<std::size_t>(m * k));
    for (std::int64_t i = 0; i < m; ++i) bfloat16_to_float(a_widened.data() + i * k, a + i * lda, k);
    const GemmBf16DecodeRange range{c, ldc, a_widened.data(), k, b, ldb, m, k, 0, 0, alpha, beta};
    const GemmKernels& float_kernel = *active_kernels().gemm;
    constexpr std::int64_t unit = 4;
    auto run = [&](std::int64_t u0, std::int64_t u1) {
      GemmBf16DecodeRange part = range;
      part.col0 = u0 * unit;
      part.col1 = std::min(n, u1 * unit);
      kernel.decode(part);
      float_kernel.epilogue_rows(c + part.col0, ldc, m, part.col1 - part.col0,
                                 epilogue.bias ? epilogue.bias + part.col0 : nullptr, epilogue.activation,
                                 epilogue.pre_activation ? epilogue.pre_activation + part.col0 : nullptr);
    };
    const std::int64_t units = ceil_div(n, unit);
    if (threads_for(m, n, k) > 1) parallel_for(units, 1, run);
    else run(0, units);
    return;
  }
  blocked_gemm(kernel, c, ldc, a, lda, transpose_a, b, ldb, transpose_b, m, n, k, alpha, beta, epilogue,
               threads_for(m, n, k));
}

namespace {

// `batch` products through `one(i)`: with at least as many products as
// threads, each thread takes whole products (no synchronization inside them);
// otherwise each product is threaded.
template <class One>
void run_batch(std::int64_t batch, const One& one) {
  const int threads = in_parallel_region() ? 1 : get_num_threads();
  if (batch >= threads && threads > 1) {
    parallel_for(batch, 1, [&](std::int64_t i0, std::int64_t i1) {
      for (std::int64_t i = i0; i < i1; ++i) one(i);
    });
  } else {
    for (std::int64_t i = 0; i < batch; ++i) one(i);
  }
}

}  // namespace

void gemm_batched(std::int64_t batch, float* c, std::int64_t ldc, std::int64_t stride_c, const float* a,
                  std::int64_t lda, const std::int64_t* offsets_a, bool transpose_a, const float* b, std::int64_t ldb,
                  const std::int64_t* offsets_b, bool transpose_b, std::int64_t m, std::int64_t n, std::int64_t k,
                  float alpha, float beta, const GemmEpilogue& epilogue) {
  run_batch(batch, [&](std::int64_t i) {
    GemmEpilogue e = epilogue;
    if (e.pre_activation) e.pre_activation += i * stride_c;
    gemm(c + i * stride_c, ldc, a + offsets_a[i], lda, transpose_a, b + offsets_b[i], ldb, transpose_b, m, n, k, alpha,
         beta, e);
  });
}

void gemm_bf16_batched(std::int64_t batch, float* c, std::int64_t ldc, std::int64_t stride_c, const std::uint16_t* a,
                       std::int64_t lda, const std::int64_t* offsets_a, bool transpose_a, const std::uint16_t* b,
                       std::int64_t ldb, const std::int64_t* offsets_b, bool transpose_b, std::int64_t m,
                       std::int64_t n, std::int64_t k, float alpha, float beta, const GemmEpilogue& epilogue) {
  run_batch(batch, [&](std::int64_t i) {
    GemmEpilogue e = epilogue;
    if (e.pre_activation) e.pre_activation += i * stride_c;
    gemm_bf16(c + i * stride_c, ldc, a + offsets_a[i], lda, transpose_a, b + offsets_b[i], ldb, transpose_b, m, n, k,
              alpha, beta, e);
  });
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
