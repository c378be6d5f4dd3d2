#include "ops/checks.h"

#include <sstream>

#include "core/errors.h"
#include "cpu/convert.h"

namespace attnkit::ops {

std::string dtype_received(DType dtype) {
  std::string text = dtype_name(dtype);
  if (dtype == DType::float16) text += " (no attnkit op computes in float16; convert with .float())";
  if (dtype == DType::bfloat16) text += " (this op computes in float32 only; convert with .float())";
  return text;
}

void check_defined(const char* op, const char* argument, const Array& a) {
  if (!a.defined()) throw_value_error(op, argument, "an array", "an undefined array");
}

void check_dtype(const char* op, const char* argument, const Array& a, DType expected) {
  check_defined(op, argument, a);
  if (a.dtype() != expected) throw_type_error(op, argument, dtype_name(expected), dtype_received(a.dtype()));
}

void check_cpu(const char* op, const char* argument, const Array& a) {
  if (a.device().kind != Device::Kind::cpu)
    throw_value_error(op, argument, "an array on cpu", "one on " + a.device().str());
}

void check_same_shape(const char* op, const char* argument, const Array& a, const char* other_argument,
                      const Array& other) {
  if (a.shape() != other.shape())
    throw_value_error(op, argument,
                      std::string("the shape of '") + other_argument + "', " + shape_string(other.shape()),
                      shape_string(a.shape()));
}

void check_bias(const char* op, const Array& bias, std::int64_t n, bool allow_bfloat16) {
  if (!bias.defined()) return;
  if (!(allow_bfloat16 && bias.dtype() == DType::bfloat16)) check_dtype(op, "bias", bias, DType::float32);
  check_cpu(op, "bias", bias);
  if (bias.shape() != Shape{n})
    throw_value_error(op, "bias", "shape [" + std::to_string(n) + "]", shape_string(bias.shape()));
}

DType check_compute_dtype(const char* op, const char* argument, const Array& a) {
  check_defined(op, argument, a);
  if (a.dtype() != DType::float32 && a.dtype() != DType::bfloat16)
    throw_type_error(op, argument, "float32 or bfloat16", dtype_received(a.dtype()));
  check_cpu(op, argument, a);
  return a.dtype();
}

void check_same_dtype(const char* op, const char* argument, const Array& a, const char* first_argument,
                      DType expected) {
  check_defined(op, argument, a);
  const bool mix = a.dtype() == DType::float32 || a.dtype() == DType::bfloat16;
  if (a.dtype() != expected && mix)
    throw_type_error(
        op, argument,
        std::string(dtype_name(expected)) + " (the dtype of '" + first_argument + "'; convert one of them explicitly)",
        dtype_name(a.dtype()));
  if (a.dtype() != expected) throw_type_error(op, argument, dtype_name(expected), dtype_received(a.dtype()));
  check_cpu(op, argument, a);
}

Array widened(const Array& a) {
  if (!a.defined() || a.dtype() != DType::bfloat16) return a;
  Array out = Array::empty(a.shape(), DType::float32);
  cpu::bfloat16_to_float(out.data<float>(), a.data<std::uint16_t>(), a.numel());
  return out;
}

Array rounded_to(const Array& y, DType dtype) {
  if (dtype != DType::bfloat16) return y;
  Array out = Array::empty(y.shape(), DType::bfloat16);
  cpu::float_to_bfloat16(out.data<std::uint16_t>(), y.data<float>(), y.numel());
  return out;
}

std::string number_text(double value, int significant_digits) {
  std::ostringstream text;
  text.precision(significant_digits);
  text << value;
  return text.str();
}

bool overlaps(const Array& a, const Array& b) {
  if (a.nbytes() == 0 || b.nbytes() == 0) return false;
  const char* a0 = static_cast<const char*>(a.raw_data());
  const char* b0 = static_cast<const char*>(b.raw_data());
  return a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

}  // namespace attnkit::ops
