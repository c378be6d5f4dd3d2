#include "ops/quantized.h"

#include <string>

#include "core/errors.h"
#include "cpu/quantized.h"
#include "ops/checks.h"

namespace attnkit::ops {

namespace {

// q int8 [N, K] and scales float32 [N], on the CPU.
void check_quantized_weight(const char* op, const Array& q, const Array& scales) {
  check_dtype(op, "weight", q, DType::int8);
  check_cpu(op, "weight", q);
  if (q.ndim() != 2) throw_value_error(op, "weight", "2 dimensions [out_features, in_features]", q.describe());
  check_dtype(op, "scales", scales, DType::float32);
  check_cpu(op, "scales", scales);
  if (scales.shape() != Shape{q.dim(0)})
    throw_value_error(op, "scales", "shape [" + std::to_string(q.dim(0)) + "] (one per row of weight)",
                      shape_string(scales.shape()));
}

}  // namespace

MatmulResult linear_int8(const Array& x, const Array& q, const Array& scales, const Array& bias,
                         cpu::GemmActivation activation, bool save_pre_activation) {
  const char* op = "linear_int8";
  check_dtype(op, "x", x, DType::float32);
  check_cpu(op, "x", x);
  check_quantized_weight(op, q, scales);
  const std::int64_t n = q.dim(0);
  const std::int64_t k = q.dim(1);
  if (x.ndim() < 1 || x.dim(-1) != k)
    throw_value_error(op, "x", "a last dimension of " + std::to_string(k) + " (weight's in_features)",
                      shape_string(x.shape()));
  if (bias.defined()) {
    check_dtype(op, "bias", bias, DType::float32);
    check_cpu(op, "bias", bias);
    if (bias.shape() != Shape{n})
      throw_value_error(op, "bias", "shape [" + std::to_string(n) + "]", shape_string(bias.shape()));
  }
  Shape out_shape = x.shape();
  out_shape.back() = n;
  MatmulResult r{Array::empty(out_shape, DType::float32), Array()};
  if (save_pre_activation && activation != cpu::GemmActivation::none)
    r.pre_activation = Array::empty(out_shape, DType::float32);
  const std::int64_t m = shape_numel(x.shape(), 0, x.shape().size() - 1);  // the rows of x
  cpu::GemmEpilogue epilogue;
  epilogue.bias = bias.defined() ? bias.data<float>() : nullptr;
  epilogue.activation = activation;
  epilogue.pre_activation = r.pre_activation.defined() ? r.pre_activation.data<float>() : nullptr;
  cpu::linear_int8(r.out.data<float>(), x.data<float>(), q.data<std::int8_t>(), scales.data<float>(), m, n, k,
                   epilogue);
  return r;
}

Array dequantize_int8(const Array& q, const Array& scales) {
  check_quantized_weight("dequantize_int8", q, scales);
  Array out = Array::empty(q.shape(), DType::float32);
  cpu::dequantize_int8(out.data<float>(), q.data<std::int8_t>(), scales.data<float>(), q.dim(0), q.dim(1));
  return out;
}

}  // namespace attnkit::ops
