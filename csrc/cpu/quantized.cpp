// The int8-weight linear layer's driver: threading, and the choice between
// the decode path and dequantized blocks on the fp32 GEMM (see quantized.h).
#include "cpu/quantized.h"

#include <algorithm>
#include <vector>

#include "core/allocator.h"
#include "core/threading.h"
#include "cpu/dispatch.h"

namespace attnkit::cpu {

namespace {

// As the fp32 GEMM (gemm.cpp): up to this many rows of x a product is bound by
// reading the weight and takes the decode path; below kParallelWork
// multiply-adds it runs on one thread.
constexpr std::int64_t kDecodeRows = 16;
constexpr double kParallelWork = 2e5;

// Taller products dequantize this many floats of weight rows at a time
// (4 MiB: a few of the GEMM's B panels, and little memory beside the model).
constexpr std::int64_t kBlockFloats = std::int64_t(1) << 20;

}  // namespace

void dequantize_int8(float* out, const std::int8_t* q, const float* scales, std::int64_t rows, std::int64_t k) {
  const QuantizedKernels& kernels = *active_kernels().quantized;
  const std::int64_t grain = std::max<std::int64_t>(1, 16384 / std::max<std::int64_t>(k, 1));
  parallel_for(rows, grain, [&](std::int64_t r0, std::int64_t r1) {
    kernels.dequantize_int8_rows(out + r0 * k, q + r0 * k, scales + r0, r1 - r0, k);
  });
}

void linear_int8(float* y, const float* x, const std::int8_t* q, const float* scales, std::int64_t m, std::int64_t n,
                 std::int64_t k, const GemmEpilogue& epilogue) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || m > kDecodeRows) {
    // Blocks of whole weight rows, dequantized, then the fp32 GEMM (which
    // threads itself) writes their columns of y with the epilogue.
    const std::int64_t block_rows =
        std::min(n, std::max<std::int64_t>(64, kBlockFloats / std::max<std::int64_t>(k, 1)));
    ScratchBuffer block(static_cast<std::size_t>(block_rows * std::max<std::int64_t>(k, 1)));
    for (std::int64_t j0 = 0; j0 < n; j0 += block_rows) {
      const std::int64_t rows = std::min(block_rows, n - j0);
      dequantize_int8(block.data(), q + j0 * k, scales + j0, rows, k);
      GemmEpilogue part = epilogue;
      if (part.bias != nullptr) part.bias += j0;
      if (part.pre_activation != nullptr) part.pre_activation += j0;
      gemm(y + j0, n, x, k, false, block.data(), k, true, m, rows, k, 1.0f, 0.0f, part);
    }
    return;
  }
  // Decode: threads take groups of 4 weight rows (columns of y), then the
  // GEMM's epilogue over their columns.
  const QuantizedKernels& kernels = *active_kernels().quantized;
  const QuantizedDecodeRange range{y, n, x, k, q, scales, m, k, 0, 0};
  const bool parallel = static_cast<double>(m) * n * k >= kParallelWork && !in_parallel_region();
  decode_by_columns(y, n, m, n, 4, parallel, epilogue, [&](std::int64_t col0, std::int64_t col1) {
    QuantizedDecodeRange part = range;
    part.col0 = col0;
    part.col1 = col1;
    kernels.decode_int8(part);
  });
}

std::int64_t packed_int8_dynamic_bytes(std::int64_t n, std::int64_t k) {
  return (n + kDynamicColumns - 1) / kDynamicColumns * kDynamicColumns * ((k + 3) / 4 * 4);
}

void pack_int8_dynamic(std::int8_t* packed, std::int32_t* row_sums, const std::int8_t* q, std::int64_t n,
                       std::int64_t k) {
  const std::int64_t k4 = (k + 3) / 4;
  const std::int64_t bytes = packed_int8_dynamic_bytes(n, k);
  for (std::int64_t i = 0; i < bytes; ++i) packed[i] = 0;
  // Row j, value p goes to sliver j / 16, group p / 4, lane j % 16, byte p % 4.
  for (std::int64_t j = 0; j < n; ++j) {
    std::int8_t* sliver = packed + (j / 16) * k4 * 64 + (j % 16) * 4;
    std::int32_t sum = 0;
    for (std::int64_t p = 0; p < k; ++p) {
      sliver[(p / 4) * 64 + p % 4] = q[j * k + p];
      sum += q[j * k + p];
    }
    row_sums[j] = sum;
  }
}

bool int8_dynamic_available() {
  return active_kernels().quantized->dynamic_tile != nullptr;
}

void linear_int8_dynamic(float* y, const float* x, const std::int8_t* packed, const std::int32_t* row_sums,
                         const float* scales, std::int64_t m, std::int64_t n, std::int64_t k,
                         const GemmEpilogue& epilogue) {
  if (m <= 0 || n <= 0) return;
  const QuantizedKernels& kernels = *active_kernels().quantized;
  const GemmKernels& gemm_kernels = *active_kernels().gemm;
  const std::int64_t ldq = (k + 3) / 4 * 4;
  const std::int64_t tiles = (m + kDynamicRows - 1) / kDynamicRows;
  // The quantized rows (padded to whole tiles with zeros, bytes 128) and
  // their scales: m * k bytes, a quarter of x.
  std::vector<std::uint8_t> xq(static_cast<std::size_t>(tiles * kDynamicRows * ldq), 128);
  std::vector<float> x_scales(static_cast<std::size_t>(tiles * kDynamicRows), 0.0f);
  parallel_for(m, std::max<std::int64_t>(1, 16384 / std::max<std::int64_t>(k, 1)),
               [&](std::int64_t r0, std::int64_t r1) {
                 kernels.quantize_rows_dynamic(xq.data() + r0 * ldq, x_scales.data() + r0, x + r0 * k, r1 - r0, k);
               });
  // Work items: blocks of rows (their xq stays in L2 while the weight's
  // column groups pass) times column groups, rows outer, so that a thread's
  // items share their rows.
  constexpr std::int64_t kBlockTiles = 32;  // 256 rows
  const std::int64_t groups = (n + kDynamicColumns - 1) / kDynamicColumns;
  const std::int64_t columns_per_item = 4;  // groups of kDynamicColumns
  const std::int64_t column_items = (groups + columns_per_item - 1) / columns_per_item;
  const std::int64_t row_items = (tiles + kBlockTiles - 1) / kBlockTiles;
  parallel_for(row_items * column_items, 1, [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t item = i0; item < i1; ++item) {
      const std::int64_t tile0 = (item / column_items) * kBlockTiles;
      const std::int64_t col0 = (item % column_items) * columns_per_item * kDynamicColumns;
      const std::int64_t col1 = std::min(n, col0 + columns_per_item * kDynamicColumns);
      for (std::int64_t tile = tile0; tile < std::min(tiles, tile0 + kBlockTiles); ++tile) {
        const std::int64_t row = tile * kDynamicRows;
        const QuantizedDynamicTile t{y + row * n,
                                     n,
                                     xq.data() + row * ldq,
                                     ldq,
                                     x_scales.data() + row,
                                     packed,
                                     row_sums,
                                     scales,
                                     std::min(kDynamicRows, m - row),
                                     col0,
                                     col1,
                                     ldq / 4};
        kernels.dynamic_tile(t);
      }
      const std::int64_t row0 = tile0 * kDynamicRows;
      const std::int64_t rows = std::min(m, (tile0 + kBlockTiles) * kDynamicRows) - row0;
      gemm_kernels.epilogue_rows(y + row0 * n + col0, n, rows, col1 - col0,
                                 epilogue.bias ? epilogue.bias + col0 : nullptr, epilogue.activation,
                                 epilogue.pre_activation ? epilogue.pre_activation + row0 * n + col0 : nullptr);
    }
  });
}

}  // namespace attnkit::cpu
