// Philox and dropout kernels compiled with the avx2 flags (see CMakeLists.txt);
// entered only when the CPU has avx2 (core/cpu_features.cpp).
#include "cpu/random.h"
#include "cpu/random_kernels.h"
#include "cpu/vec/vec_avx2.h"

namespace attnkit::cpu::avx2 {

void philox4x32_10(std::uint32_t out[4], const std::uint32_t counter[4], const std::uint32_t key[2]) {
  random_kernels::philox_block<VecU32>(out, counter, key);
}

void random_bits(std::uint32_t* bits, std::int64_t first, std::int64_t count, std::uint64_t seed,
                 std::uint64_t offset) {
  random_kernels::random_bits<VecU32>(bits, first, count, seed, offset);
}

void uniform(float* values, std::int64_t first, std::int64_t count, std::uint64_t seed, std::uint64_t offset) {
  random_kernels::uniform<Vec, VecU32>(values, first, count, seed, offset);
}

void dropout(float* y, const float* x, std::int64_t first, std::int64_t count, std::uint32_t drop_below, float scale,
             std::uint64_t seed, std::uint64_t offset) {
  random_kernels::dropout<Vec, VecU32>(y, x, first, count, drop_below, scale, seed, offset);
}

}  // namespace attnkit::cpu::avx2
