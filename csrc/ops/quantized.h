// Linear layers with int8 weights: the checked entry points over Arrays.
#pragma once

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

}  // namespace attnkit::ops
