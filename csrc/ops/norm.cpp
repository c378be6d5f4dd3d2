#include "ops/norm.h"

#include <cmath>
#include <string>

#include "core/errors.h"
#include "cpu/norm.h"
#include "ops/checks.h"

namespace attnkit::ops {
namespace {

// x (or the forward's sum): float32 on cpu with a non-empty last dimension
// (a forward's x may be bfloat16: ops/checks.h).
std::int64_t check_rows(const char* op, const char* argument, const Array& x, bool forward = false) {
  if (forward) {
    check_compute_dtype(op, argument, x);
  } else {
    check_dtype(op, argument, x, DType::float32);
    check_cpu(op, argument, x);
  }
  if (x.ndim() < 1 || x.dim(-1) < 1)
    throw_value_error(op, argument, "an array whose last dimension is at least 1", "shape " + shape_string(x.shape()));
  return x.dim(-1);
}

void check_normalized_shape(const char* op, const Shape& normalized_shape, const Array& x) {
  const Shape expected{x.dim(-1)};
  if (normalized_shape != expected)
    throw_value_error(op, "normalized_shape",
                      shape_string(expected) + " (the last dimension of x; only the last dimension is normalized)",
                      shape_string(normalized_shape));
}

// weight or bias: undefined, or [C] on cpu of x's dtype (float32 in a backward).
void check_parameter(const char* op, const char* argument, const Array& p, std::int64_t C,
                     DType dtype = DType::float32) {
  if (!p.defined()) return;
  check_same_dtype(op, argument, p, "x", dtype);
  if (p.shape() != Shape{C})
    throw_value_error(op, argument, "shape " + shape_string(Shape{C}) + " (the normalized dimension)",
                      shape_string(p.shape()));
}

// A saved per-row statistic: float32 [N] on cpu.
void check_statistic(const char* op, const char* argument, const Array& s, std::int64_t N) {
  check_dtype(op, argument, s, DType::float32);
  check_cpu(op, argument, s);
  if (s.shape() != Shape{N})
    throw_value_error(op, argument, "shape " + shape_string(Shape{N}) + " (one value per row)",
                      shape_string(s.shape()));
}

void check_eps(const char* op, double eps) {
  if (!(eps >= 0.0) || !std::isfinite(static_cast<float>(eps)))
    throw_value_error(op, "eps", "a finite number >= 0", number_text(eps, 9));
}

void check_gradient(const char* op, const Array& grad, const char* argument, const Array& x, const char* x_argument) {
  check_dtype(op, argument, grad, DType::float32);
  check_cpu(op, argument, grad);
  check_same_shape(op, argument, grad, x_argument, x);
}

const float* data_or_null(const Array& a) {
  return a.defined() ? a.data<float>() : nullptr;
}
float* data_or_null(Array& a) {
  return a.defined() ? a.data<float>() : nullptr;
}

NormGradients allocate_gradients(const Array& x, bool weight_grad, bool bias_grad) {
  const std::int64_t C = x.dim(-1);
  NormGradients out;
  out.dx = Array::empty(x.shape(), DType::float32);
  if (weight_grad) out.dweight = Array::empty({C}, DType::float32);
  if (bias_grad) out.dbias = Array::empty({C}, DType::float32);
  return out;
}

}  // namespace

LayerNormOutputs layer_norm_forward(const Array& x, const Shape& normalized_shape, const Array& weight,
                                    const Array& bias, double eps) {
  const char* op = "layer_norm";
  const std::int64_t C = check_rows(op, "x", x, true);
  check_normalized_shape(op, normalized_shape, x);
  check_parameter(op, "weight", weight, C, x.dtype());
  check_parameter(op, "bias", bias, C, x.dtype());
  check_eps(op, eps);
  const std::int64_t N = x.numel() / C;
  const Array x32 = widened(x), weight32 = widened(weight), bias32 = widened(bias);
  LayerNormOutputs out{Array::empty(x.shape(), DType::float32), Array::empty({N}, DType::float32),
                       Array::empty({N}, DType::float32)};
  cpu::layer_norm_forward(out.y.data<float>(), out.mean.data<float>(), out.rstd.data<float>(), x32.data<float>(),
                          data_or_null(weight32), data_or_null(bias32), N, C, static_cast<float>(eps));
  out.y = rounded_to(out.y, x.dtype());
  return out;
}

NormGradients layer_norm_backward(const Array& grad_output, const Array& x, const Array& weight, const Array& mean,
                                  const Array& rstd, double eps, bool weight_grad, bool bias_grad) {
  const char* op = "layer_norm_backward";
  const std::int64_t C = check_rows(op, "x", x);
  const std::int64_t N = x.numel() / C;
  check_gradient(op, grad_output, "grad_output", x, "x");
  check_parameter(op, "weight", weight, C);
  check_statistic(op, "mean", mean, N);
  check_statistic(op, "rstd", rstd, N);
  check_eps(op, eps);
  NormGradients out = allocate_gradients(x, weight_grad, bias_grad);
  cpu::layer_norm_backward(out.dx.data<float>(), data_or_null(out.dweight), data_or_null(out.dbias),
                           grad_output.data<float>(), nullptr, x.data<float>(), data_or_null(weight),
                           mean.data<float>(), rstd.data<float>(), N, C, static_cast<float>(eps));
  return out;
}

AddLayerNormOutputs add_layer_norm_forward(const Array& x, const Array& residual, const Shape& normalized_shape,
                                           const Array& weight, const Array& bias, double eps) {
  const char* op = "add_layer_norm";
  const std::int64_t C = check_rows(op, "x", x, true);
  check_same_dtype(op, "residual", residual, "x", x.dtype());
  check_same_shape(op, "residual", residual, "x", x);
  check_normalized_shape(op, normalized_shape, x);
  check_parameter(op, "weight", weight, C, x.dtype());
  check_parameter(op, "bias", bias, C, x.dtype());
  check_eps(op, eps);
  const std::int64_t N = x.numel() / C;
  const Array x32 = widened(x), residual32 = widened(residual), weight32 = widened(weight), bias32 = widened(bias);
  AddLayerNormOutputs out{Array::empty(x.shape(), DType::float32), Array::empty(x.shape(), DType::float32),
                          Array::empty({N}, DType::float32), Array::empty({N}, DType::float32)};
  cpu::add_layer_norm_forward(out.sum.data<float>(), out.y.data<float>(), out.mean.data<float>(),
                              out.rstd.data<float>(), x32.data<float>(), residual32.data<float>(),
                              data_or_null(weight32), data_or_null(bias32), N, C, static_cast<float>(eps));
  // The sum is the next block's residual stream: in x's dtype, as a plain
  // add would return it.
  out.sum = rounded_to(out.sum, x.dtype());
  out.y = rounded_to(out.y, x.dtype());
  return out;
}

NormGradients add_layer_norm_backward(const Array& grad_sum, const Array& grad_output, const Array& sum,
                                      const Array& weight, const Array& mean, const Array& rstd, double eps,
                                      bool weight_grad, bool bias_grad) {
  const char* op = "add_layer_norm_backward";
  const std::int64_t C = check_rows(op, "sum", sum);
  const std::int64_t N = sum.numel() / C;
  check_gradient(op, grad_sum, "grad_sum", sum, "sum");
  check_gradient(op, grad_output, "grad_output", sum, "sum");
  check_parameter(op, "weight", weight, C);
  check_statistic(op, "mean", mean, N);
  check_statistic(op, "rstd", rstd, N);
  check_eps(op, eps);
  NormGradients out = allocate_gradients(sum, weight_grad, bias_grad);
  cpu::layer_norm_backward(out.dx.data<float>(), data_or_null(out.dweight), data_or_null(out.dbias),
                           grad_output.data<float>(), grad_sum.data<float>(), sum.data<float>(), data_or_null(weight),
                           mean.data<float>(), rstd.data<float>(), N, C, static_cast<float>(eps));
  return out;
}

RmsNormOutputs rms_norm_forward(const Array& x, const Shape& normalized_shape, const Array& weight, double eps) {
  const char* op = "rms_norm";
  const std::int64_t C = check_rows(op, "x", x, true);
  check_normalized_shape(op, normalized_shape, x);
  check_parameter(op, "weight", weight, C, x.dtype());
  check_eps(op, eps);
  const std::int64_t N = x.numel() / C;
  const Array x32 = widened(x), weight32 = widened(weight);
  RmsNormOutputs out{Array::empty(x.shape(), DType::float32), Array::empty({N}, DType::float32)};
  cpu::rms_norm_forward(out.y.data<float>(), out.rstd.data<float>(), x32.data<float>(), data_or_null(weight32), N, C,
                        static_cast<float>(eps));
  out.y = rounded_to(out.y, x.dtype());
  return out;
}

NormGradients rms_norm_backward(const Array& grad_output, const Array& x, const Array& weight, const Array& rstd,
                                double eps, bool weight_grad) {
  const char* op = "rms_norm_backward";
  const std::int64_t C = check_rows(op, "x", x);
  const std::int64_t N = x.numel() / C;
  check_gradient(op, grad_output, "grad_output", x, "x");
  check_parameter(op, "weight", weight, C);
  check_statistic(op, "rstd", rstd, N);
  check_eps(op, eps);
  NormGradients out = allocate_gradients(x, weight_grad, false);
  cpu::rms_norm_backward(out.dx.data<float>(), data_or_null(out.dweight), grad_output.data<float>(), x.data<float>(),
                         data_or_null(weight), rstd.data<float>(), N, C, static_cast<float>(eps));
  return out;
}

}  // namespace attnkit::ops
