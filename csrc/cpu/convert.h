// Conversions between float32 and bfloat16, exact in both directions:
// widening is a shift; narrowing rounds to nearest, ties to even, keeps NaN a
// NaN (quiet, sign and top payload bits kept), and keeps subnormals (the
// hardware's vcvtneps2bf16 treats subnormal inputs as zero, so it is not used).
// bfloat16 values travel as their bits, std::uint16_t.
#pragma once

#include <cstdint>

namespace attnkit::cpu {

// out[n] = bfloat16(in[n]); threaded.
void float_to_bfloat16(std::uint16_t* out, const float* in, std::int64_t n);
// out[n] = float32(in[n]); threaded.
void bfloat16_to_float(float* out, const std::uint16_t* in, std::int64_t n);

// The kernels of one ISA (cpu/dispatch.h), over n consecutive elements,
// single-threaded.
struct ConvertKernels {
  void (*float_to_bfloat16)(std::uint16_t* out, const float* in, std::int64_t n);
  void (*bfloat16_to_float)(float* out, const std::uint16_t* in, std::int64_t n);
};

}  // namespace attnkit::cpu
