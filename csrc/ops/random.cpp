#include "ops/random.h"

#include <cmath>

#include "core/errors.h"
#include "cpu/random.h"
#include "ops/checks.h"

namespace attnkit::ops {
namespace {

// Shared by forward and backward: both scale the kept elements of one stream.
Array dropout(const char* op, const char* argument, const Array& x, double p, std::uint64_t seed,
              std::uint64_t offset) {
  check_dtype(op, argument, x, DType::float32);
  check_cpu(op, argument, x);
  const DropoutThreshold t = dropout_threshold(op, "p", p);
  Array y = Array::empty(x.shape(), DType::float32);
  cpu::dropout(y.data<float>(), x.data<float>(), x.numel(), t.drop_below, t.scale, seed, offset);
  return y;
}

}  // namespace

DropoutThreshold dropout_threshold(const char* op, const char* argument, double p) {
  // Written so that NaN fails too.
  if (!(p > 0.0 && p < 1.0))
    throw_value_error(op, argument,
                      "a drop probability with 0 < p < 1 (p = 0 and p = 1 are handled "
                      "without random numbers)",
                      number_text(p));
  // p * 2^32 is exact in double; rounding it to the nearest integer makes
  // P(drop) = drop_below / 2^32 within 2^-33 of p. Only p > 1 - 2^-33 rounds
  // to 2^32, out of uint32's range: clamped, it keeps one number in 2^32.
  const double threshold = std::nearbyint(p * 4294967296.0);
  const std::uint32_t drop_below = threshold >= 4294967295.0 ? 4294967295u : static_cast<std::uint32_t>(threshold);
  return {drop_below, static_cast<float>(1.0 / (1.0 - p))};
}

std::array<std::uint32_t, 4> philox4x32_10(const std::array<std::uint32_t, 4>& counter,
                                           const std::array<std::uint32_t, 2>& key) {
  std::array<std::uint32_t, 4> out{};
  cpu::philox4x32_10(out.data(), counter.data(), key.data());
  return out;
}

Array random_bits(std::int64_t n, std::uint64_t seed, std::uint64_t offset) {
  if (n < 0) throw_value_error("random_bits", "n", "a count >= 0", std::to_string(n));
  Array bits = Array::empty({n}, DType::int32);
  cpu::random_bits(reinterpret_cast<std::uint32_t*>(bits.data<std::int32_t>()), n, seed, offset);
  return bits;
}

Array uniform(const Shape& shape, std::uint64_t seed, std::uint64_t offset) {
  for (std::int64_t size : shape)
    if (size < 0) throw_value_error("uniform", "shape", "sizes >= 0", shape_string(shape));
  Array values = Array::empty(shape, DType::float32);
  cpu::uniform(values.data<float>(), values.numel(), seed, offset);
  return values;
}

Array dropout_forward(const Array& x, double p, std::uint64_t seed, std::uint64_t offset) {
  return dropout("dropout", "input", x, p, seed, offset);
}

Array dropout_backward(const Array& dy, double p, std::uint64_t seed, std::uint64_t offset) {
  return dropout("dropout_backward", "grad_output", dy, p, seed, offset);
}

}  // namespace attnkit::ops
