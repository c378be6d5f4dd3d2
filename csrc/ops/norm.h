// Normalization ops: the checked, public C++ entry points. Every op normalizes
// over the last dimension C; the other dimensions count rows (N = numel / C).
// An undefined Array stands for an absent weight or bias.
#pragma once

#include "core/array.h"

namespace attnkit::ops {

struct LayerNormOutputs {
  Array y;     // the shape of x
  Array mean;  // float32 [N]
  Array rstd;  // float32 [N], 1 / sqrt(var + eps)
};

struct AddLayerNormOutputs {
  Array sum;   // x + residual
  Array y;     // layer_norm(sum)
  Array mean;  // float32 [N]
  Array rstd;  // float32 [N]
};

struct RmsNormOutputs {
  Array y;     // the shape of x
  Array rstd;  // float32 [N], 1 / sqrt(mean(x^2) + eps)
};

// Undefined where not asked for.
struct NormGradients {
  Array dx;
  Array dweight;
  Array dbias;
};

// normalized_shape must be [C], the last dimension of x; weight and bias are
// [C] or undefined; eps >= 0.
LayerNormOutputs layer_norm_forward(const Array& x, const Shape& normalized_shape, const Array& weight,
                                    const Array& bias, double eps);
// eps: the forward's (backward recomputes rstd in double, see cpu/norm_kernels.h).
NormGradients layer_norm_backward(const Array& grad_output, const Array& x, const Array& weight, const Array& mean,
                                  const Array& rstd, double eps, bool weight_grad, bool bias_grad);

// sum = x + residual, y = layer_norm(sum), in one pass over x and residual.
AddLayerNormOutputs add_layer_norm_forward(const Array& x, const Array& residual, const Shape& normalized_shape,
                                           const Array& weight, const Array& bias, double eps);
// dx (the gradient of both x and residual) = grad_sum + the LayerNorm gradient
// of grad_output; sum is the forward's first output.
NormGradients add_layer_norm_backward(const Array& grad_sum, const Array& grad_output, const Array& sum,
                                      const Array& weight, const Array& mean, const Array& rstd, double eps,
                                      bool weight_grad, bool bias_grad);

RmsNormOutputs rms_norm_forward(const Array& x, const Shape& normalized_shape, const Array& weight, double eps);
NormGradients rms_norm_backward(const Array& grad_output, const Array& x, const Array& weight, const Array& rstd,
                                double eps, bool weight_grad);

}  // namespace attnkit::ops
