// Probe loops compiled with the avx2 flags (see CMakeLists.txt); entered only
// when the CPU has avx2 (core/cpu_features.cpp).
#include "cpu/probe.h"
#include "cpu/probe_kernels.h"
#include "cpu/vec/vec_avx2.h"

namespace attnkit::cpu::avx2 {

namespace {
// Two FMA pipes with a latency of 4-5 cycles need 8-10 chains; 12 leaves room
// for a slower FMA and still fits the register file with the two constants.
constexpr int kFmaChains = 12;
}  // namespace

const int fma_flops_per_iteration = 2 * Vec::width * kFmaChains;

float memory_read(const float* a, std::int64_t n) {
  return probe_kernels::memory_read<Vec, 4>(a, n);
}
void memory_write(float* a, float value, std::int64_t n) {
  probe_kernels::memory_write<Vec>(a, value, n);
}
void memory_copy(float* b, const float* a, std::int64_t n) {
  probe_kernels::memory_copy<Vec>(b, a, n);
}
void memory_triad(float* a, const float* b, const float* c, float scalar, std::int64_t n) {
  probe_kernels::memory_triad<Vec>(a, b, c, scalar, n);
}
float fma_chains(std::int64_t iterations, float multiplier, float addend) {
  return probe_kernels::fma_chains<Vec, kFmaChains>(iterations, multiplier, addend);
}

}  // namespace attnkit::cpu::avx2
