// Vec for AVX2 + FMA: 8 floats in a ymm register (see vec_generic.h for the
// vocabulary). Included only by cpu/isa/isa.h, for an ISA compiled with at
// least these instructions.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace attnkit::cpu::isa::ATTNKIT_ISA {

struct Vec {
  __m256 v;
  static constexpr int width = 8;
  static Vec broadcast(float x) { return {_mm256_set1_ps(x)}; }
  static Vec load(const float* p) { return {_mm256_loadu_ps(p)}; }
  // Lanes >= n read nothing (maskload never touches masked-off memory).
  static Vec load_partial(const float* p, int n) { return {_mm256_maskload_ps(p, lane_mask(n))}; }
  static Vec load_int8(const std::int8_t* p) {
    return {_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))))};
  }
  void store(float* p) const { _mm256_storeu_ps(p, v); }
  void store_partial(float* p, int n) const { _mm256_maskstore_ps(p, lane_mask(n), v); }
  static __m256i lane_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static __m256 first_lanes(int n) { return _mm256_castsi256_ps(lane_mask(n)); }
};
using Mask = __m256;

inline Vec operator+(Vec a, Vec b) {
  return {_mm256_add_ps(a.v, b.v)};
}
inline Vec operator-(Vec a, Vec b) {
  return {_mm256_sub_ps(a.v, b.v)};
}
inline Vec operator*(Vec a, Vec b) {
  return {_mm256_mul_ps(a.v, b.v)};
}
inline Vec operator/(Vec a, Vec b) {
  return {_mm256_div_ps(a.v, b.v)};
}
inline Vec operator-(Vec a) {
  return {_mm256_xor_ps(a.v, _mm256_set1_ps(-0.0f))};
}
inline Vec fma(Vec a, Vec b, Vec c) {
  return {_mm256_fmadd_ps(a.v, b.v, c.v)};
}
inline Vec product_error(Vec a, Vec b, Vec p) {
  return {_mm256_fmsub_ps(a.v, b.v, p.v)};
}
inline Vec max(Vec a, Vec b) {
  return {_mm256_max_ps(a.v, b.v)};
}
inline Vec min(Vec a, Vec b) {
  return {_mm256_min_ps(a.v, b.v)};
}
inline Vec abs(Vec a) {
  return {_mm256_andnot_ps(_mm256_set1_ps(-0.0f), a.v)};
}
inline Vec sqrt(Vec a) {
  return {_mm256_sqrt_ps(a.v)};
}
inline Mask less(Vec a, Vec b) {
  return _mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ);
}
inline Mask greater(Vec a, Vec b) {
  return _mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ);
}
inline Mask greater_equal(Vec a, Vec b) {
  return _mm256_cmp_ps(a.v, b.v, _CMP_GE_OQ);
}
inline Vec select(Mask m, Vec if_true, Vec if_false) {
  return {_mm256_blendv_ps(if_false.v, if_true.v, m)};
}
inline Vec round_nearest(Vec a) {
  return {_mm256_round_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
}
inline Vec truncate(Vec a) {
  return {_mm256_round_ps(a.v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC)};
}
inline Vec pow2_integer(Vec n) {
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n.v), _mm256_set1_epi32(127)), 23);
  return {_mm256_castsi256_ps(bits)};
}

// Transposes the 8 x 8 block held in rows[0..7] (row i, lane j) in place:
// afterwards rows[j] holds what was lane j of every row.
inline void transpose(Vec (&rows)[8]) {
  __m256 pairs[8], quads[8];
  for (int g = 0; g < 4; ++g) {
    pairs[2 * g] = _mm256_unpacklo_ps(rows[2 * g].v, rows[2 * g + 1].v);
    pairs[2 * g + 1] = _mm256_unpackhi_ps(rows[2 * g].v, rows[2 * g + 1].v);
  }
  // quads[4h + c], 128-bit lane k: column 4k + c of rows 4h .. 4h + 3
  for (int h = 0; h < 2; ++h) {
    quads[4 * h + 0] = _mm256_shuffle_ps(pairs[4 * h], pairs[4 * h + 2], 0x44);
    quads[4 * h + 1] = _mm256_shuffle_ps(pairs[4 * h], pairs[4 * h + 2], 0xEE);
    quads[4 * h + 2] = _mm256_shuffle_ps(pairs[4 * h + 1], pairs[4 * h + 3], 0x44);
    quads[4 * h + 3] = _mm256_shuffle_ps(pairs[4 * h + 1], pairs[4 * h + 3], 0xEE);
  }
  for (int c = 0; c < 4; ++c) {
    rows[c].v = _mm256_permute2f128_ps(quads[c], quads[4 + c], 0x20);
    rows[4 + c].v = _mm256_permute2f128_ps(quads[c], quads[4 + c], 0x31);
  }
}

// 32-bit unsigned integer lanes, as many as Vec has floats (Philox streams).
struct VecU32 {
  __m256i v;
  static constexpr int width = 8;
  static VecU32 broadcast(std::uint32_t x) { return {_mm256_set1_epi32(static_cast<int>(x))}; }
  static VecU32 load(const std::uint32_t* p) { return {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))}; }
  void store(std::uint32_t* p) const { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v); }
  static VecU32 lane_index() { return {_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)}; }
};

inline VecU32 operator+(VecU32 a, VecU32 b) {
  return {_mm256_add_epi32(a.v, b.v)};
}
inline VecU32 operator^(VecU32 a, VecU32 b) {
  return {_mm256_xor_si256(a.v, b.v)};
}
inline VecU32 shift_right(VecU32 a, int bits) {
  return {_mm256_srli_epi32(a.v, bits)};
}
// The full 64-bit products a * b, lane by lane, split in their high and low
// words: vpmuludq multiplies the even lanes; the odd lanes are shifted down
// into even position for a second one.
inline void multiply_wide(VecU32 a, VecU32 b, VecU32& high, VecU32& low) {
  const __m256i even = _mm256_mul_epu32(a.v, b.v);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a.v, 32), _mm256_srli_epi64(b.v, 32));
  high.v = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  low.v = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}
// Unsigned a >= b, as a Mask for select on Vec: max(a, b) == a.
inline Mask greater_equal(VecU32 a, VecU32 b) {
  return _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_max_epu32(a.v, b.v), a.v));
}
// The lanes as floats; exact for values below 2^24.
inline Vec to_float(VecU32 a) {
  return {_mm256_cvtepi32_ps(a.v)};
}

// The sum of the lanes, halves folded onto each other (a tree: 3 dependent
// adds, not 7).
inline float reduce_add(Vec a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// The largest lane: halves folded onto each other, 8 -> 4 -> 2 -> 1.
inline float reduce_max(Vec a) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

}  // namespace attnkit::cpu::isa::ATTNKIT_ISA
