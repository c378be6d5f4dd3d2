// Vec for the generic (baseline) kernels: one float per "vector". The loops
// written over it are plain scalar code, which the compiler auto-vectorizes for
// the baseline ISA (SSE2 on x86-64, NEON on aarch64).
//
// Every Vec header defines the same small vocabulary, in the namespace of the
// ISA that includes it (attnkit::cpu::isa::ATTNKIT_ISA, see cpu/isa/isa.h):
// templates over Vec (vec_math.h, the *_kernels.h files) are then compiled
// once per ISA with that ISA's flags and never collide at link time, also
// when two ISAs share one Vec header.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace attnkit::cpu::isa::ATTNKIT_ISA {

struct Vec {
  float v;
  static constexpr int width = 1;
  static Vec broadcast(float x) { return {x}; }
  static Vec load(const float* p) { return {*p}; }
  static Vec load_partial(const float* p, int n) { return {n > 0 ? *p : 0.0f}; }
  // `width` signed bytes widened to floats (int8 weights, exact).
  static Vec load_int8(const std::int8_t* p) { return {static_cast<float>(*p)}; }
  void store(float* p) const { *p = v; }
  void store_partial(float* p, int n) const {
    if (n > 0) *p = v;
  }
  // The mask of the first n lanes: with select, gives a row's tail lanes a
  // neutral value (0 for sums, -inf for maxima).
  static bool first_lanes(int n) { return n > 0; }
};
using Mask = bool;

inline Vec operator+(Vec a, Vec b) {
  return {a.v + b.v};
}
inline Vec operator-(Vec a, Vec b) {
  return {a.v - b.v};
}
inline Vec operator*(Vec a, Vec b) {
  return {a.v * b.v};
}
inline Vec operator/(Vec a, Vec b) {
  return {a.v / b.v};
}
inline Vec operator-(Vec a) {
  return {-a.v};
}
// Without a guaranteed FMA unit, a*b+c is two roundings; the generic kernels'
// accuracy does not rest on fusing.
inline Vec fma(Vec a, Vec b, Vec c) {
  return {a.v * b.v + c.v};
}
// The exact rounding error of the product p = fl(a*b): a*b - p. Double holds
// the product of two floats exactly.
inline Vec product_error(Vec a, Vec b, Vec p) {
  return {static_cast<float>(static_cast<double>(a.v) * b.v - p.v)};
}
// max(a, b) = a > b ? a : b, min(a, b) = a < b ? a : b: with a NaN in `a` they
// return b, as the x86 instructions do. Put the constant first to keep NaNs.
inline Vec max(Vec a, Vec b) {
  return {a.v > b.v ? a.v : b.v};
}
inline Vec min(Vec a, Vec b) {
  return {a.v < b.v ? a.v : b.v};
}
inline Vec abs(Vec a) {
  return {std::fabs(a.v)};
}
inline Vec sqrt(Vec a) {
  return {std::sqrt(a.v)};
}
inline Mask less(Vec a, Vec b) {
  return a.v < b.v;
}
inline Mask greater(Vec a, Vec b) {
  return a.v > b.v;
}
inline Mask greater_equal(Vec a, Vec b) {
  return a.v >= b.v;
}
inline Vec select(Mask m, Vec if_true, Vec if_false) {
  return {m ? if_true.v : if_false.v};
}
// Round to nearest integer (ties to even) for |x| < 2^22, by the 1.5*2^23 trick.
inline Vec round_nearest(Vec a) {
  volatile float magic = 12582912.0f;  // volatile: keep the compiler from folding it away
  float m = magic;
  return {(a.v + m) - m};
}
inline Vec truncate(Vec a) {
  return {static_cast<float>(static_cast<std::int32_t>(a.v))};
}
// 2^n for an integer-valued n in [-126, 127], built from the exponent bits.
inline Vec pow2_integer(Vec n) {
  const std::uint32_t bits = static_cast<std::uint32_t>(static_cast<std::int32_t>(n.v) + 127) << 23;
  float out;
  std::memcpy(&out, &bits, sizeof out);
  return {out};
}

// Transposes the width x width block held in rows (1 x 1 here: nothing to do).
inline void transpose(Vec (&)[1]) {}

// 32-bit unsigned integer lanes, as many as Vec has floats (Philox streams).
struct VecU32 {
  std::uint32_t v;
  static constexpr int width = 1;
  static VecU32 broadcast(std::uint32_t x) { return {x}; }
  static VecU32 load(const std::uint32_t* p) { return {*p}; }
  void store(std::uint32_t* p) const { *p = v; }
  static VecU32 lane_index() { return {0u}; }  // {0, 1, ..., width - 1}
};

inline VecU32 operator+(VecU32 a, VecU32 b) {
  return {a.v + b.v};
}
inline VecU32 operator^(VecU32 a, VecU32 b) {
  return {a.v ^ b.v};
}
inline VecU32 shift_right(VecU32 a, int bits) {
  return {a.v >> bits};
}
// The full 64-bit products a * b, lane by lane, split in their high and low words.
inline void multiply_wide(VecU32 a, VecU32 b, VecU32& high, VecU32& low) {
  const std::uint64_t product = std::uint64_t(a.v) * b.v;
  high.v = static_cast<std::uint32_t>(product >> 32);
  low.v = static_cast<std::uint32_t>(product);
}
// Unsigned a >= b, as a Mask for select on Vec.
inline Mask greater_equal(VecU32 a, VecU32 b) {
  return a.v >= b.v;
}
// The lanes as floats; exact for values below 2^24.
inline Vec to_float(VecU32 a) {
  return {static_cast<float>(a.v)};
}

// The sum of the lanes.
inline float reduce_add(Vec a) {
  return a.v;
}

// The largest lane.
inline float reduce_max(Vec a) {
  return a.v;
}

}  // namespace attnkit::cpu::isa::ATTNKIT_ISA
