// The float32 <-> bfloat16 conversions (cpu/convert.h), on the bits. Plain
// loops the compiler vectorizes for each ISA's flags; templates over the ISA's
// Vec only so that each ISA gets its own copy (cpu/isa/isa.h).
#pragma once

#include <cstdint>
#include <cstring>

namespace attnkit::cpu::convert_kernels {

// Round to nearest, ties to even, on the bits: adding 0x7FFF plus the bit
// that becomes the last kept one carries into the upper half exactly when the
// lower half is above half an ulp, or at half with an odd upper half. A NaN
// would carry its payload into the exponent (or become infinity), so it keeps
// its upper half with the quiet bit set instead.
template <class V>
inline std::uint16_t bfloat16_bits_nearest(std::uint32_t bits) {
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<std::uint16_t>((bits >> 16) | 0x40u);
  return static_cast<std::uint16_t>((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

template <class V>
inline void float_to_bfloat16(std::uint16_t* out, const float* in, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    std::uint32_t bits;
    std::memcpy(&bits, in + i, sizeof bits);
    out[i] = bfloat16_bits_nearest<V>(bits);
  }
}

template <class V>
inline void bfloat16_to_float(float* out, const std::uint16_t* in, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    const std::uint32_t bits = std::uint32_t(in[i]) << 16;
    std::memcpy(out + i, &bits, sizeof bits);
  }
}

}  // namespace attnkit::cpu::convert_kernels
