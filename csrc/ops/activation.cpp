#include "ops/activation.h"

#include "core/errors.h"
#include "ops/checks.h"

namespace attnkit::ops {

namespace {

void check_float32_cpu(const char* op, const char* argument, const Array& a) {
  check_dtype(op, argument, a, DType::float32);
  check_cpu(op, argument, a);
}

// The checks every elementwise backward shares: grad_output and x float32 on
// the cpu, of one shape.
void check_elementwise_backward(const char* op, const Array& dy, const Array& x) {
  check_float32_cpu(op, "grad_output", dy);
  check_float32_cpu(op, "x", x);
  check_same_shape(op, "grad_output", dy, "x", x);
}

// x's last dimension holds the gate and up halves: it must exist and be even.
std::int64_t swiglu_hidden(const char* op, const Array& x) {
  if (x.ndim() == 0 || x.dim(-1) % 2 != 0)
    throw_value_error(op, "x", "a last dimension of even size 2H (the gate half, then the up half)",
                      "shape " + shape_string(x.shape()));
  return x.dim(-1) / 2;
}

}  // namespace

cpu::GeluApproximation parse_gelu_approximation(const std::string& approximate) {
  if (approximate == "none") return cpu::GeluApproximation::none;
  if (approximate == "tanh") return cpu::GeluApproximation::tanh;
  throw_value_error("gelu", "approximate", "'none' or 'tanh'", "'" + approximate + "'");
}

Array gelu_forward(const Array& x, cpu::GeluApproximation approximation) {
  const DType dtype = check_compute_dtype("gelu", "x", x);
  const Array x32 = widened(x);
  Array y = Array::empty(x.shape(), DType::float32);
  cpu::gelu_forward(y.data<float>(), x32.data<float>(), x.numel(), approximation);
  return rounded_to(y, dtype);
}

Array gelu_backward(const Array& dy, const Array& x, cpu::GeluApproximation approximation) {
  check_elementwise_backward("gelu_backward", dy, x);
  Array dx = Array::empty(x.shape(), DType::float32);
  cpu::gelu_backward(dx.data<float>(), dy.data<float>(), x.data<float>(), x.numel(), approximation);
  return dx;
}

Array relu_forward(const Array& x) {
  const DType dtype = check_compute_dtype("relu", "x", x);
  const Array x32 = widened(x);
  Array y = Array::empty(x.shape(), DType::float32);
  cpu::relu_forward(y.data<float>(), x32.data<float>(), x.numel());
  return rounded_to(y, dtype);
}

Array relu_backward(const Array& dy, const Array& x) {
  check_elementwise_backward("relu_backward", dy, x);
  Array dx = Array::empty(x.shape(), DType::float32);
  cpu::relu_backward(dx.data<float>(), dy.data<float>(), x.data<float>(), x.numel());
  return dx;
}

Array silu_forward(const Array& x) {
  const DType dtype = check_compute_dtype("silu", "x", x);
  const Array x32 = widened(x);
  Array y = Array::empty(x.shape(), DType::float32);
  cpu::silu_forward(y.data<float>(), x32.data<float>(), x.numel());
  return rounded_to(y, dtype);
}

Array silu_backward(const Array& dy, const Array& x) {
  check_elementwise_backward("silu_backward", dy, x);
  Array dx = Array::empty(x.shape(), DType::float32);
  cpu::silu_backward(dx.data<float>(), dy.data<float>(), x.data<float>(), x.numel());
  return dx;
}

Array tanh_forward(const Array& x) {
  const DType dtype = check_compute_dtype("tanh", "x", x);
  const Array x32 = widened(x);
  Array y = Array::empty(x.shape(), DType::float32);
  cpu::tanh_forward(y.data<float>(), x32.data<float>(), x.numel());
  return rounded_to(y, dtype);
}

Array tanh_backward(const Array& dy, const Array& x) {
  check_elementwise_backward("tanh_backward", dy, x);
  Array dx = Array::empty(x.shape(), DType::float32);
  cpu::tanh_backward(dx.data<float>(), dy.data<float>(), x.data<float>(), x.numel());
  return dx;
}

Array swiglu_forward(const Array& x) {
  const DType dtype = check_compute_dtype("swiglu", "x", x);
  const std::int64_t hidden = swiglu_hidden("swiglu", x);
  Shape shape = x.shape();
  shape.back() = hidden;
  const Array x32 = widened(x);
  Array y = Array::empty(shape, DType::float32);
  const std::int64_t rows = hidden == 0 ? 0 : y.numel() / hidden;
  cpu::swiglu_forward(y.data<float>(), x32.data<float>(), rows, hidden);
  return rounded_to(y, dtype);
}

Array swiglu_backward(const Array& dy, const Array& x) {
  check_float32_cpu("swiglu_backward", "grad_output", dy);
  check_float32_cpu("swiglu_backward", "x", x);
  const std::int64_t hidden = swiglu_hidden("swiglu_backward", x);
  Shape expected = x.shape();
  expected.back() = hidden;
  if (dy.shape() != expected)
    throw_value_error("swiglu_backward", "grad_output",
                      "shape " + shape_string(expected) + " (x's with the last dimension halved)",
                      shape_string(dy.shape()));
  Array dx = Array::empty(x.shape(), DType::float32);
  const std::int64_t rows = hidden == 0 ? 0 : dy.numel() / hidden;
  cpu::swiglu_backward(dx.data<float>(), dy.data<float>(), x.data<float>(), rows, hidden);
  return dx;
}

}  // namespace attnkit::ops
