// CPU kernels of the random family: Philox 4x32-10 streams (see
// random_kernels.h for the generator and how a stream maps counters to
// elements) and dropout. The entry points split the work over attnkit's threads;
// since every number depends only on (seed, offset, element index), the
// results are the same for any thread count and any ISA.
#pragma once

#include <cstdint>

namespace attnkit::cpu {

// One Philox 4x32-10 block: out = philox(counter, key).
void philox4x32_10(std::uint32_t out[4], const std::uint32_t counter[4], const std::uint32_t key[2]);

// bits[i] = number i of the stream (seed, offset), i < n.
void random_bits(std::uint32_t* bits, std::int64_t n, std::uint64_t seed, std::uint64_t offset);
// values[i] = uniform float in [0, 1) from number i of the stream, i < n.
void uniform(float* values, std::int64_t n, std::uint64_t seed, std::uint64_t offset);

// y[i] = number i >= drop_below ? x[i] * scale : 0, i < n. A kept element is
// x * scale, a dropped one exactly 0 (also when x is inf or NaN). y may alias x.
// The backward pass is the same call on the gradient with the same stream.
void dropout(float* y, const float* x, std::int64_t n, std::uint32_t drop_below, float scale, std::uint64_t seed,
             std::uint64_t offset);

// The kernels of one ISA (cpu/dispatch.h), over elements [first, first +
// count) of a stream, single-threaded; pointers point at element `first`.
struct RandomKernels {
  void (*philox4x32_10)(std::uint32_t out[4], const std::uint32_t counter[4], const std::uint32_t key[2]);
  void (*random_bits)(std::uint32_t* bits, std::int64_t first, std::int64_t count, std::uint64_t seed,
                      std::uint64_t offset);
  void (*uniform)(float* values, std::int64_t first, std::int64_t count, std::uint64_t seed, std::uint64_t offset);
  void (*dropout)(float* y, const float* x, std::int64_t first, std::int64_t count, std::uint32_t drop_below,
                  float scale, std::uint64_t seed, std::uint64_t offset);
};

}  // namespace attnkit::cpu
