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
           const Array& positions, const std::vector<double>& frequencies, bool inverse) {
  // The forward takes bfloat16 too (ops/checks.h); the backward float32 only.
  if (inverse) {
    check_dtype(op, argument, x, DType::float32);
    check_cpu(op, argument, x);
  } else {
    check_compute_dtype(op, argument, x);
  }
  if (x.ndim() != 4)
    throw_value_error(op, argument, "a 4-d [batch, seq, heads, head_dim] array", shape_string(x.shape()));
  const std::int64_t B = x.dim(0), T = x.dim(1), H = x.dim(2), D = x.dim(3);
  if (D % 2 != 0) throw_value_error(op, argument, "an even head_dim (RoPE rotates pairs)", shape_string(x.shape()));
  const std::int64_t* position_values = nullptr;
  if (positions.defined()) {
    check_dtype(op, "positions", positions, DType::int64);
    check_cpu(op, "positions", positions);
    if (positions.ndim() != 2 || positions.dim(0) != B || positions.dim(1) != T)
      throw_value_error(op, "positions", "shape " + shape_string({B, T}) + " ([batch, seq] of x)",
                        shape_string(positions.shape()));
    position_values = positions.data<std::int64_t>();
    for (std::int64_t k = 0; k < B * T; ++k)
      if (position_values[k] < 0 || position_values[k] >= kMaxPosition)
        throw_value_error(op, "positions", "positions in [0, 2^53)", std::to_string(position_values[k]));
  } else {
    check_positions(op, T, offset);
  }
  if (frequencies.empty()) {
    if (!(base > 0.0 && std::isfinite(base))) throw_value_error(op, "base", "a finite base > 0", number_text(base));
  } else {
    if (static_cast<std::int64_t>(frequencies.size()) != D / 2)
      throw_value_error(op, "frequencies", std::to_string(D / 2) + " values (head_dim / 2)",
                        std::to_string(frequencies.size()) + " values");
    for (double w : frequencies)
      if (!(w > 0.0 && std::isfinite(w)))
        throw_value_error(op, "frequencies", "finite frequencies > 0", number_text(w));
  }
  const Array x32 = widened(x);
  Array y = Array::empty(x.shape(), DType::float32);
  cpu::rope(y.data<float>(), x32.data<float>(), B, T, H, D, position_values, offset,
            frequencies.empty() ? nullptr : frequencies.data(), base, interleaved, inverse);
  return rounded_to(y, x.dtype());
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

Array rope_forward(const Array& x, std::int64_t offset, double base, bool interleaved, const Array& positions,
                   const std::vector<double>& frequencies) {
  return rope("rope", "x", x, offset, base, interleaved, positions, frequencies, false);
}

Array rope_backward(const Array& grad_output, std::int64_t offset, double base, bool interleaved,
                    const Array& positions, const std::vector<double>& frequencies) {
  return rope("rope_backward", "grad_output", grad_output, offset, base, interleaved, positions, frequencies, true);
}

}  // namespace attnkit::ops
