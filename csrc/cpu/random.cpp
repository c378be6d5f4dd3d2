#include "cpu/random.h"

#include <algorithm>

#include "core/threading.h"
#include "cpu/dispatch.h"

namespace attnkit::cpu {

namespace {

// Threads take whole blocks of 256 elements: a multiple of the 64 numbers one
// Philox group makes, so no group is computed by two threads, and whole cache
// lines of output. Below ~16K elements a parallel region costs more than it saves.
constexpr std::int64_t kBlock = 256;
constexpr std::int64_t kGrainBlocks = 64;

template <typename Body>
void for_each_block(std::int64_t n, const Body& body) {
  parallel_for_blocks(n, kBlock, kGrainBlocks, body);
}

}  // namespace

void philox4x32_10(std::uint32_t out[4], const std::uint32_t counter[4], const std::uint32_t key[2]) {
  active_kernels().random->philox4x32_10(out, counter, key);
}

void random_bits(std::uint32_t* bits, std::int64_t n, std::uint64_t seed, std::uint64_t offset) {
  const auto kernel = active_kernels().random->random_bits;
  for_each_block(n, [&](std::int64_t first, std::int64_t count) { kernel(bits + first, first, count, seed, offset); });
}

void uniform(float* values, std::int64_t n, std::uint64_t seed, std::uint64_t offset) {
  const auto kernel = active_kernels().random->uniform;
  for_each_block(n,
                 [&](std::int64_t first, std::int64_t count) { kernel(values + first, first, count, seed, offset); });
}

void dropout(float* y, const float* x, std::int64_t n, std::uint32_t drop_below, float scale, std::uint64_t seed,
             std::uint64_t offset) {
  const auto kernel = active_kernels().random->dropout;
  for_each_block(n, [&](std::int64_t first, std::int64_t count) {
    kernel(y + first, x + first, first, count, drop_below, scale, seed, offset);
  });
}

}  // namespace attnkit::cpu
