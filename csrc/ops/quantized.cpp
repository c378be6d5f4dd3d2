#include "ops/quantized.h"

#include <string>

#include "core/cpu_features.h"
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
  check_bias(op, bias, n);
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

std::pair<Array, Array> pack_int8_dynamic(const Array& q) {
  const char* op = "pack_int8_dynamic";
  check_dtype(op, "weight", q, DType::int8);
  check_cpu(op, "weight", q);
  if (q.ndim() != 2) throw_value_error(op, "weight", "2 dimensions [out_features, in_features]", q.describe());
  const std::int64_t n = q.dim(0), k = q.dim(1);
  if (k < 1 || k > cpu::kDynamicMaxDepth)
    throw_value_error(op, "weight", "in_features in [1, " + std::to_string(cpu::kDynamicMaxDepth) + "]",
                      shape_string(q.shape()));
  const std::int64_t rows = (n + cpu::kDynamicColumns - 1) / cpu::kDynamicColumns * cpu::kDynamicColumns;
  Array packed = Array::empty({rows, (k + 3) / 4 * 4}, DType::int8);
  Array sums = Array::empty({n}, DType::int32);
  cpu::pack_int8_dynamic(packed.data<std::int8_t>(), sums.data<std::int32_t>(), q.data<std::int8_t>(), n, k);
  return {packed, sums};
}

MatmulResult linear_int8_dynamic(const Array& x, const Array& packed, const Array& row_sums, const Array& scales,
                                 const Array& bias, cpu::GemmActivation activation, bool save_pre_activation) {
  const char* op = "linear_int8_dynamic";
  check_dtype(op, "x", x, DType::float32);
  check_cpu(op, "x", x);
  check_dtype(op, "scales", scales, DType::float32);
  check_cpu(op, "scales", scales);
  if (scales.ndim() != 1) throw_value_error(op, "scales", "1 dimension [out_features]", scales.describe());
  const std::int64_t n = scales.dim(0);
  check_dtype(op, "row_sums", row_sums, DType::int32);
  check_cpu(op, "row_sums", row_sums);
  if (row_sums.shape() != Shape{n})
    throw_value_error(op, "row_sums", "shape [" + std::to_string(n) + "]", shape_string(row_sums.shape()));
  if (x.ndim() < 1) throw_value_error(op, "x", "at least 1 dimension", x.describe());
  const std::int64_t k = x.dim(-1);
  if (k < 1 || k > cpu::kDynamicMaxDepth)
    throw_value_error(op, "x", "a last dimension in [1, " + std::to_string(cpu::kDynamicMaxDepth) + "]",
                      shape_string(x.shape()));
  const Shape packed_shape{(n + cpu::kDynamicColumns - 1) / cpu::kDynamicColumns * cpu::kDynamicColumns,
                           (k + 3) / 4 * 4};
  check_dtype(op, "packed", packed, DType::int8);
  check_cpu(op, "packed", packed);
  if (packed.shape() != packed_shape)
    throw_value_error(op, "packed",
                      "shape " + shape_string(packed_shape) + " (pack_int8_dynamic of a [" + std::to_string(n) + ", " +
                          std::to_string(k) + "] weight)",
                      shape_string(packed.shape()));
  check_bias(op, bias, n);
  if (!cpu::int8_dynamic_available())
    throw RuntimeError(
        std::string(op) + ": the CPU tier in use (" + cpu_isa_name(active_cpu_isa()) +
        ") has no int8 dot products; dynamic quantization needs AVX512-VNNI (the avx512_vnni, avx512_bf16 "
        "or amx tier)");
  Shape out_shape = x.shape();
  out_shape.back() = n;
  MatmulResult r{Array::empty(out_shape, DType::float32), Array()};
  if (save_pre_activation && activation != cpu::GemmActivation::none)
    r.pre_activation = Array::empty(out_shape, DType::float32);
  cpu::GemmEpilogue epilogue;
  epilogue.bias = bias.defined() ? bias.data<float>() : nullptr;
  epilogue.activation = activation;
  epilogue.pre_activation = r.pre_activation.defined() ? r.pre_activation.data<float>() : nullptr;
  cpu::linear_int8_dynamic(r.out.data<float>(), x.data<float>(), packed.data<std::int8_t>(),
                           row_sums.data<std::int32_t>(), scales.data<float>(),
                           shape_numel(x.shape(), 0, x.shape().size() - 1), n, k, epilogue);
  return r;
}

}  // namespace attnkit::ops
