// Linear layers with int8 weights (attnkit.quantize): y = x W^T, where the
// weight W [n, k] is stored as int8 q with one float scale per output row
// (symmetric, per output channel): W[j, :] = scales[j] * q[j, :]. The
// activations stay float32.
//
// Decode (few rows of x) is bound by reading the weight, so it reads 1 byte
// per weight and widens it to float in registers, in the manner of the fp32
// GEMM's decode dot products (gemm_kernels.h): the row's dot product is
// summed in float32 over the int8 values and multiplied by the row's scale
// once at the end. Taller products dequantize a block of weight rows to
// float32 at a time and run the fp32 GEMM on it (the FMAs dominate there, and
// the block is read again by every row of x).
#pragma once

#include <cstdint>

#include "cpu/gemm.h"

namespace attnkit::cpu {

// y[m, n] (row-major, contiguous) = x[m, k] q[n, k]^T * scales[n], then the
// epilogue (bias, activation, pre-activation copy). Multithreaded unless
// called from inside a parallel region.
void linear_int8(float* y, const float* x, const std::int8_t* q, const float* scales, std::int64_t m, std::int64_t n,
                 std::int64_t k, const GemmEpilogue& epilogue = {});

// out[r, :] = scales[r] * q[r, :] for r < rows (float32 [rows, k]).
void dequantize_int8(float* out, const std::int8_t* q, const float* scales, std::int64_t rows, std::int64_t k);

// ---- dynamic activation quantization (VNNI) -------------------------------
//
// An option for prefill and batched work, as ONNX Runtime's dynamic
// quantization: each row of x is quantized on the fly, symmetrically,
// xs[i] = max|x[i, :]| / 127 and xq[i, p] = round(x[i, p] / xs[i]) (nearest,
// ties to even), and the products are int8 x int8 -> int32 dot products
// (vpdpbusd, which multiplies unsigned by signed bytes: xq + 128 is used and
// 128 * sum(q[j, :]) subtracted). Then y[i, j] = (xs[i] * scales[j]) *
// float(sum_p xq[i, p] q[j, p]): the exact dot product of the quantized
// operands, one rounding of the int32 and two of the scale products.
//
// The weight is packed once for the instruction: slivers of 16 rows, each
// ceil(k / 4) groups of 16 x 4 bytes (row j's 4 consecutive values of k),
// zero-padded to whole slivers of kDynamicColumns rows and to k4 * 4 values.
constexpr std::int64_t kDynamicColumns = 32;
// Depths up to this keep every int32 sum exact (255 * 127 * k < 2^31).
constexpr std::int64_t kDynamicMaxDepth = 65536;

// Bytes of the packed weight: round_up(n, kDynamicColumns) * round_up(k, 4).
std::int64_t packed_int8_dynamic_bytes(std::int64_t n, std::int64_t k);
// packed (packed_int8_dynamic_bytes) and row_sums[n] (sum of each row of q).
void pack_int8_dynamic(std::int8_t* packed, std::int32_t* row_sums, const std::int8_t* q, std::int64_t n,
                       std::int64_t k);
// Whether the active ISA has the kernel (AVX512-VNNI).
bool int8_dynamic_available();
// y[m, n] = as above, then the epilogue; needs int8_dynamic_available() and
// 0 < k <= kDynamicMaxDepth.
void linear_int8_dynamic(float* y, const float* x, const std::int8_t* packed, const std::int32_t* row_sums,
                         const float* scales, std::int64_t m, std::int64_t n, std::int64_t k,
                         const GemmEpilogue& epilogue = {});

// ---- what each ISA provides ------------------------------------------------

// The decode path for columns [col0, col1) of y: y[0:m, col0:col1] =
// x q[col0:col1]^T * scales[col0:col1], no epilogue.
struct QuantizedDecodeRange {
  float* y;
  std::int64_t ldy;
  const float* x;
  std::int64_t ldx;
  const std::int8_t* q;  // [n, k], row stride k
  const float* scales;
  std::int64_t m, k;
  std::int64_t col0, col1;
};

// Rows of x one dynamic tile computes (the xq buffer is padded to them).
constexpr std::int64_t kDynamicRows = 8;

struct QuantizedDynamicTile {
  float* y;  // y[row0, 0], row stride ldy
  std::int64_t ldy;
  const std::uint8_t* xq;  // kDynamicRows rows, stride ldq
  std::int64_t ldq;
  const float* x_scales;      // kDynamicRows of them
  const std::int8_t* packed;  // the packed weight
  const std::int32_t* row_sums;
  const float* scales;
  std::int64_t rows;        // rows to write, <= kDynamicRows
  std::int64_t col0, col1;  // whole kDynamicColumns groups, col1 clipped to n
  std::int64_t k4;          // groups of 4 values of k
};

struct QuantizedKernels {
  void (*decode_int8)(const QuantizedDecodeRange& range);
  // out[r, :] = scales[r] * q[r, :] over `rows` rows of k values.
  void (*dequantize_int8_rows)(float* out, const std::int8_t* q, const float* scales, std::int64_t rows,
                               std::int64_t k);
  // Dynamic quantization (null without AVX512-VNNI). Rows [0, rows) of x
  // into xq (row stride ldq = round_up(k, 4), the padding zeros; bytes are
  // xq + 128) and their scales.
  void (*quantize_rows_dynamic)(std::uint8_t* xq, float* x_scales, const float* x, std::int64_t rows, std::int64_t k);
  // y[0:rows, col0:col1] from kDynamicRows rows of xq (rows past `rows`
  // are read, not written: the buffer is padded) and the packed weight.
  void (*dynamic_tile)(const QuantizedDynamicTile& tile);
};

}  // namespace attnkit::cpu
