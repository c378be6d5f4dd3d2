// Positional encodings: the checked, public C++ entry points.
#pragma once

#include <cstdint>

#include "core/array.h"

namespace attnkit::ops {

// float32 [length, dim], the table of "Attention Is All You Need" for
// positions offset .. offset + length - 1 (see cpu/position.h).
Array sinusoidal_position_encoding(std::int64_t length, std::int64_t dim, std::int64_t offset);

// Rotary position embedding of x float32 [batch, seq, heads, head_dim]
// (head_dim even); row t sits at position offset + t. The backward pass
// rotates the gradient back by the same angles.
Array rope_forward(const Array& x, std::int64_t offset, double base, bool interleaved);
Array rope_backward(const Array& grad_output, std::int64_t offset, double base, bool interleaved);

}  // namespace attnkit::ops
