// The int8-weight linear layer's driver: threading, and the choice between
// the decode path and dequantized blocks on the fp32 GEMM (see quantized.h).
#include "cpu/quantized.h"

#include <algorithm>

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
  const GemmKernels& gemm_kernels = *active_kernels().gemm;
  constexpr std::int64_t kUnit = 4;
  const QuantizedDecodeRange range{y, n, x, k, q, scales, m, k, 0, 0};
  auto run = [&](std::int64_t u0, std::int64_t u1) {
    QuantizedDecodeRange part = range;
    part.col0 = u0 * kUnit;
    part.col1 = std::min(n, u1 * kUnit);
    kernels.decode_int8(part);
    gemm_kernels.epilogue_rows(y + part.col0, n, m, part.col1 - part.col0,
                               epilogue.bias ? epilogue.bias + part.col0 : nullptr, epilogue.activation,
                               epilogue.pre_activation ? epilogue.pre_activation + part.col0 : nullptr);
  };
  const std::int64_t units = (n + kUnit - 1) / kUnit;
  if (static_cast<double>(m) * n * k < kParallelWork || in_parallel_region()) run(0, units);
  else parallel_for(units, 1, run);
}

}  // namespace attnkit::cpu
