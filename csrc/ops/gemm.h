// Matrix products: the checked entry points over Arrays.
#pragma once

#include <string>

#include "core/array.h"
#include "cpu/gemm.h"

namespace attnkit::ops {

// "none", "relu", "gelu" (erf) or "gelu_tanh"; ValueError otherwise.
cpu::GemmActivation parse_gemm_activation(const std::string& activation);

struct MatmulOptions {
  bool transpose_a = false;
  bool transpose_b = false;
  float alpha = 1.0f;
  float beta = 0.0f;  // needs `out`
  cpu::GemmActivation activation = cpu::GemmActivation::none;
  bool save_pre_activation = false;
  // The result's dtype for bfloat16 a and b: float32 or bfloat16 (rounded
  // once, from the float32 result; then beta must be 0). float32 a and b
  // give float32.
  DType out_dtype = DType::float32;
};

struct MatmulResult {
  Array out;
  Array pre_activation;  // defined when asked for and the activation is not none
};

// out = activation(alpha * op(a) @ op(b) + beta * out + bias): a and b both
// float32, or both bfloat16 (float32 products and sums; out float32 or
// bfloat16, see out_dtype); bias and the pre-activation float32.
//   a: [..., M, K] ([..., K, M] with transpose_a); b: [..., K, N] ([..., N, K]
//   with transpose_b); the batch dimensions broadcast as in numpy.matmul.
//   out: undefined (a new array) or the result's shape, updated in place;
//   bias: undefined or [N].
MatmulResult matmul(const Array& a, const Array& b, const Array& out, const Array& bias, const MatmulOptions& options);

// grad_bias[N] = the sum of grad_output[..., N] over every leading index.
Array bias_gradient(const Array& grad_output);

}  // namespace attnkit::ops
