#include "ops/softmax.h"

#include <cmath>
#include <string>

#include "core/errors.h"
#include "cpu/softmax.h"
#include "ops/checks.h"

namespace attnkit::ops {
namespace {

const char* op_name(bool log, bool backward) {
  if (log) return backward ? "log_softmax_backward" : "log_softmax";
  return backward ? "softmax_backward" : "softmax";
}

void check_scale(const char* op, double scale) {
  // A scale <= 0 would turn masked (-inf) entries into the largest ones or
  // into NaN (0 * -inf); a scale that does not fit float32 is not meant.
  if (!(scale > 0.0) || !std::isfinite(static_cast<float>(scale)))
    throw_value_error(op, "scale", "a finite number > 0", number_text(scale, 9));
}

void check_has_rows(const char* op, const char* argument, const Array& a) {
  if (a.ndim() < 1) throw_value_error(op, argument, "an array with at least one dimension", "a 0-d array");
}

}  // namespace

Array softmax_forward(const Array& x, double scale, bool log) {
  const char* op = op_name(log, false);
  const DType dtype = check_compute_dtype(op, "x", x);
  check_has_rows(op, "x", x);
  check_scale(op, scale);
  const std::int64_t C = x.dim(-1);
  const std::int64_t N = C == 0 ? 0 : x.numel() / C;
  const Array x32 = widened(x);
  Array y = Array::empty(x.shape(), DType::float32);
  cpu::softmax_forward(y.data<float>(), x32.data<float>(), N, C, static_cast<float>(scale), log);
  return rounded_to(y, dtype);
}

Array softmax_backward(const Array& grad_output, const Array& y, double scale, bool log) {
  const char* op = op_name(log, true);
  check_dtype(op, "grad_output", grad_output, DType::float32);
  check_dtype(op, "y", y, DType::float32);
  check_cpu(op, "grad_output", grad_output);
  check_cpu(op, "y", y);
  check_has_rows(op, "y", y);
  check_same_shape(op, "grad_output", grad_output, "y", y);
  check_scale(op, scale);
  const std::int64_t C = y.dim(-1);
  const std::int64_t N = C == 0 ? 0 : y.numel() / C;
  Array dx = Array::empty(y.shape(), DType::float32);
  cpu::softmax_backward(dx.data<float>(), grad_output.data<float>(), y.data<float>(), N, C, static_cast<float>(scale),
                        log);
  return dx;
}

}  // namespace attnkit::ops
