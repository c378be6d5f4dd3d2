#include "ops/activation.h"

#include "core/errors.h"
#include "ops/checks.h"

namespace attnkit::ops {

cpu::GeluApproximation parse_gelu_approximation(const std::string& approximate) {
  if (approximate == "none") return cpu::GeluApproximation::none;
  if (approximate == "tanh") return cpu::GeluApproximation::tanh;
  throw_value_error("gelu", "approximate", "'none' or 'tanh'", "'" + approximate + "'");
}

Array gelu_forward(const Array& x, cpu::GeluApproximation approximation) {
  check_dtype("gelu", "x", x, DType::float32);
  check_cpu("gelu", "x", x);
  Array y = Array::empty(x.shape(), DType::float32);
  cpu::gelu_forward(y.data<float>(), x.data<float>(), x.numel(), approximation);
  return y;
}

Array gelu_backward(const Array& dy, const Array& x, cpu::GeluApproximation approximation) {
  check_dtype("gelu_backward", "grad_output", dy, DType::float32);
  check_dtype("gelu_backward", "x", x, DType::float32);
  check_cpu("gelu_backward", "grad_output", dy);
  check_cpu("gelu_backward", "x", x);
  check_same_shape("gelu_backward", "grad_output", dy, "x", x);
  Array dx = Array::empty(x.shape(), DType::float32);
  cpu::gelu_backward(dx.data<float>(), dy.data<float>(), x.data<float>(), x.numel(), approximation);
  return dx;
}

}  // namespace attnkit::ops
