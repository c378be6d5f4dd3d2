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

struct QuantizedKernels {
  void (*decode_int8)(const QuantizedDecodeRange& range);
  // out[r, :] = scales[r] * q[r, :] over `rows` rows of k values.
  void (*dequantize_int8_rows)(float* out, const std::int8_t* q, const float* scales, std::int64_t rows,
                               std::int64_t k);
};

}  // namespace attnkit::cpu
