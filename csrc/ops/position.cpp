#include "ops/position.h"

#include <cmath>
#include <string>

#include "core/errors.h"
#include "cpu/position.h"
#include "ops/checks.h"

namespace attnkit::ops {
namespace {

// Positions up to 2^53 are exact doubles; the angles stay meaningful far
// below that, but this is the limit of what the computation represents.
constexpr std::int64_t kMaxPosition = std::int64_t(1) << 53;

void check_positions(const char* op, std::int64_t length, std::int64_t offset) {
  if (offset < 0) throw_value_error(op, "offset", "a position >= 0", std::to_string(offset));
  if (offset > kMaxPosition - length)
    throw_value_error(op, "offset", "offset + length <= 2^53", std::to_string(offset));
}

Array rope(const char* op, const char* argument, const Array& x, std::int64_t offset, double base, bool interleaved,
           bool inverse) {
  check_dtype(op, argument, x, DType::float32);
  check_cpu(op, argument, x);
  if (x.ndim() != 4)
    throw_value_error(op, argument, "a 4-d [batch, seq, heads, head_dim] array", shape_string(x.shape()));
  const std::int64_t B = x.dim(0), T = x.dim(1), H = x.dim(2), D = x.dim(3);
  if (D % 2 != 0) throw_value_error(op, argument, "an even head_dim (RoPE rotates pairs)", shape_string(x.shape()));
  check_positions(op, T, offset);
  if (!(base > 0.0 && std::isfinite(base))) throw_value_error(op, "base", "a finite base > 0", number_text(base));
  Array y = Array::empty(x.shape(), DType::float32);
  cpu::rope(y.data<float>(), x.data<float>(), B, T, H, D, offset, base, interleaved, inverse);
  return y;
}

}  // namespace

Array sinusoidal_position_encoding(std::int64_t length, std::int64_t dim, std::int64_t offset) {
  const char* op = "sinusoidal_position_encoding";
  if (length < 0) throw_value_error(op, "length", "a length >= 0", std::to_string(length));
  if (dim < 1) throw_value_error(op, "dim", "a dimension >= 1", std::to_string(dim));
  check_positions(op, length, offset);
  Array table = Array::empty({length, dim}, DType::float32);
  cpu::sinusoidal_position_encoding(table.data<float>(), length, dim, offset);
  return table;
}

Array rope_forward(const Array& x, std::int64_t offset, double base, bool interleaved) {
  return rope("rope", "x", x, offset, base, interleaved, false);
}

Array rope_backward(const Array& grad_output, std::int64_t offset, double base, bool interleaved) {
  return rope("rope_backward", "grad_output", grad_output, offset, base, interleaved, true);
}

}  // namespace attnkit::ops
