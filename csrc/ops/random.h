// Random ops: the checked, public C++ entry points. Every random op takes the
// stream it draws from as (seed, offset) - the Philox key and the counter's
// high half (see cpu/random_kernels.h) - so the caller's generator decides
// which numbers come out and the same (seed, offset) gives them again.
#pragma once

#include <array>
#include <cstdint>

#include "core/array.h"

namespace attnkit::ops {

// One Philox 4x32-10 block for a given counter and key (known-answer tests).
std::array<std::uint32_t, 4> philox4x32_10(const std::array<std::uint32_t, 4>& counter,
                                           const std::array<std::uint32_t, 2>& key);

// The first n 32-bit numbers of the stream (seed, offset), as int32 bits
// (read them as uint32).
Array random_bits(std::int64_t n, std::uint64_t seed, std::uint64_t offset);

// float32 of `shape`, uniform in [0, 1), from the stream (seed, offset).
Array uniform(const Shape& shape, std::uint64_t seed, std::uint64_t offset);

// How a kernel drops with probability p (0 < p < 1, else ValueError naming op
// and argument): drop an element when its 32-bit number is below drop_below,
// scale the kept ones by `scale`. Shared by dropout and attention dropout.
struct DropoutThreshold {
  std::uint32_t drop_below;
  float scale;
};
DropoutThreshold dropout_threshold(const char* op, const char* argument, double p);

// Dropout with drop probability p, 0 < p < 1: y = x / (1 - p) where element
// i's number is kept, else 0. Element i is dropped when its 32-bit number is
// below round(p * 2^32), so it is kept with probability 1 - p within 2^-32.
Array dropout_forward(const Array& x, double p, std::uint64_t seed, std::uint64_t offset);
// dx = dy / (1 - p) where the forward pass kept the element, else 0: the mask
// is regenerated from the same stream, never stored.
Array dropout_backward(const Array& dy, double p, std::uint64_t seed, std::uint64_t offset);

}  // namespace attnkit::ops
