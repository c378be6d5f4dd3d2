// Linear layers with int8 weights: the checked entry points over Arrays.
#pragma once

#include <utility>

#include "core/array.h"
#include "cpu/gemm.h"
#include "ops/gemm.h"

namespace attnkit::ops {

// out = activation(x @ (scales[:, None] * q).T + bias), float32.
//   x: float32 [..., K]; q: int8 [N, K]; scales: float32 [N]; bias: undefined
//   or float32 [N]. The pre-activation is returned when asked for and the
//   activation is not none.
MatmulResult linear_int8(const Array& x, const Array& q, const Array& scales, const Array& bias,
                         cpu::GemmActivation activation, bool save_pre_activation);

// scales[:, None] * q as float32 [N, K].
Array dequantize_int8(const Array& q, const Array& scales);

// The weight packed for dynamic quantization (cpu/quantized.h): int8
// [round_up(N, 32), round_up(K, 4)] and the row sums, int32 [N].
std::pair<Array, Array> pack_int8_dynamic(const Array& q);

// out = activation(x_dynamic @ (scales[:, None] * q).T + bias) with x
// quantized per row on the fly (int8 x int8 dot products, AVX512-VNNI):
// x float32 [..., K]; packed and row_sums from pack_int8_dynamic of q [N, K].
// RuntimeError where the active CPU tier has no VNNI kernel.
MatmulResult linear_int8_dynamic(const Array& x, const Array& packed, const Array& row_sums, const Array& scales,
                                 const Array& bias, cpu::GemmActivation activation, bool save_pre_activation);

}  // namespace attnkit::ops
