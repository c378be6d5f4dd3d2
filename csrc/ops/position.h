// Positional encodings: the checked, public C++ entry points.
#pragma once

#include <cstdint>
#include <vector>

#include "core/array.h"

namespace attnkit::ops {

// float32 [length, dim], the table of "Attention Is All You Need" for
// positions offset .. offset + length - 1 (see cpu/position.h).
Array sinusoidal_position_encoding(std::int64_t length, std::int64_t dim, std::int64_t offset);

// Rotary position embedding of x float32 [batch, seq, heads, head_dim]
// (head_dim even). Row (b, t) sits at position positions[b, t] (int64
// [batch, seq], each in [0, 2^53)) or, when positions is undefined, at
// offset + t. Pair i turns by position * frequencies[i] (head_dim / 2 finite
// positive values: per-pair frequencies such as Llama 3's scaled ones) or,
// when frequencies is empty, by position * base^(-2i / head_dim). The
// backward pass rotates the gradient back by the same angles.
Array rope_forward(const Array& x, std::int64_t offset, double base, bool interleaved, const Array& positions = Array(),
                   const std::vector<double>& frequencies = {});
Array rope_backward(const Array& grad_output, std::int64_t offset, double base, bool interleaved,
                    const Array& positions = Array(), const std::vector<double>& frequencies = {});

}  // namespace attnkit::ops
