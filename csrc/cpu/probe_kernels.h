// Probe loops over a Vec, written once and compiled per ISA (isa/probe.cpp).
// Include a vec_<isa>.h first. n is always a whole number of cache lines (16 floats), so
// there are no tails.
#pragma once

#include <cstdint>

namespace attnkit::cpu::probe_kernels {

template <class V>
inline float horizontal_sum(V v) {
  float lanes[V::width];
  v.store(lanes);
  float sum = 0.0f;
  for (int i = 0; i < V::width; ++i) sum += lanes[i];
  return sum;
}

// A sum over one accumulator is a chain of dependent adds, limited by the add
// latency (3-4 cycles) rather than by memory; kAccumulators independent sums
// keep enough loads in flight to measure the memory instead.
template <class V, int kAccumulators>
inline float memory_read(const float* a, std::int64_t n) {
  V sums[kAccumulators];
  for (int j = 0; j < kAccumulators; ++j) sums[j] = V::broadcast(0.0f);
  constexpr int step = kAccumulators * V::width;
  std::int64_t i = 0;
  for (; i + step <= n; i += step)
    for (int j = 0; j < kAccumulators; ++j) sums[j] = sums[j] + V::load(a + i + j * V::width);
  for (; i < n; i += V::width) sums[0] = sums[0] + V::load(a + i);
  V total = sums[0];
  for (int j = 1; j < kAccumulators; ++j) total = total + sums[j];
  return horizontal_sum(total);
}

template <class V>
inline void memory_write(float* a, float value, std::int64_t n) {
  const V v = V::broadcast(value);
  for (std::int64_t i = 0; i < n; i += V::width) v.store(a + i);
}

template <class V>
inline void memory_copy(float* b, const float* a, std::int64_t n) {
  for (std::int64_t i = 0; i < n; i += V::width) V::load(a + i).store(b + i);
}

template <class V>
inline void memory_triad(float* a, const float* b, const float* c, float scalar, std::int64_t n) {
  const V s = V::broadcast(scalar);
  for (std::int64_t i = 0; i < n; i += V::width) fma(s, V::load(c + i), V::load(b + i)).store(a + i);
}

// kChains independent chains x = x * multiplier + addend. A unit with latency
// L cycles and P pipes needs L * P independent operations in flight to start
// one every cycle on every pipe, so kChains is at least latency x pipes of the
// ISA (see the instantiations). With 0 < multiplier < 1 the chains converge to
// addend / (1 - multiplier): no overflow, no subnormals.
template <class V, int kChains>
inline float fma_chains(std::int64_t iterations, float multiplier, float addend) {
  const V m = V::broadcast(multiplier);
  const V c = V::broadcast(addend);
  V chains[kChains];
  for (int j = 0; j < kChains; ++j) chains[j] = V::broadcast(static_cast<float>(j));
  for (std::int64_t i = 0; i < iterations; ++i)
    for (int j = 0; j < kChains; ++j) chains[j] = fma(chains[j], m, c);
  V total = chains[0];
  for (int j = 1; j < kChains; ++j) total = total + chains[j];
  return horizontal_sum(total);
}

}  // namespace attnkit::cpu::probe_kernels
