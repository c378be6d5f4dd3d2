// Vec for AVX-512 (F/BW/DQ/VL): 16 floats in a zmm register, with opmask
// registers for tails and selects. Included only by cpu/isa/isa.h, for an ISA
// compiled with at least these instructions.
#pragma once

// GCC 12 reports the deliberately undefined vectors inside its own AVX-512
// intrinsics (_mm512_undefined_*, self-initialized by design) as used
// uninitialized, a false positive of that release; the warnings point into
// immintrin.h, so they are silenced for that header only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include <cstdint>

namespace attnkit::cpu::isa::ATTNKIT_ISA {

struct Vec {
  __m512 v;
  static constexpr int width = 16;
  static Vec broadcast(float x) { return {_mm512_set1_ps(x)}; }
  static Vec load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static Vec load_partial(const float* p, int n) { return {_mm512_maskz_loadu_ps(lane_mask(n), p)}; }
  static Vec load_int8(const std::int8_t* p) {
    return {_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))))};
  }
  void store(float* p) const { _mm512_storeu_ps(p, v); }
  void store_partial(float* p, int n) const { _mm512_mask_storeu_ps(p, lane_mask(n), v); }
  static __mmask16 lane_mask(int n) {
    return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
  }
  static __mmask16 first_lanes(int n) { return lane_mask(n); }
};
using Mask = __mmask16;

inline Vec operator+(Vec a, Vec b) {
  return {_mm512_add_ps(a.v, b.v)};
}
inline Vec operator-(Vec a, Vec b) {
  return {_mm512_sub_ps(a.v, b.v)};
}
inline Vec operator*(Vec a, Vec b) {
  return {_mm512_mul_ps(a.v, b.v)};
}
inline Vec operator/(Vec a, Vec b) {
  return {_mm512_div_ps(a.v, b.v)};
}
inline Vec operator-(Vec a) {
  return {_mm512_xor_ps(a.v, _mm512_set1_ps(-0.0f))};
}
inline Vec fma(Vec a, Vec b, Vec c) {
  return {_mm512_fmadd_ps(a.v, b.v, c.v)};
}
inline Vec product_error(Vec a, Vec b, Vec p) {
  return {_mm512_fmsub_ps(a.v, b.v, p.v)};
}
inline Vec max(Vec a, Vec b) {
  return {_mm512_max_ps(a.v, b.v)};
}
inline Vec min(Vec a, Vec b) {
  return {_mm512_min_ps(a.v, b.v)};
}
inline Vec abs(Vec a) {
  return {_mm512_abs_ps(a.v)};
}
inline Vec sqrt(Vec a) {
  return {_mm512_sqrt_ps(a.v)};
}
inline Mask less(Vec a, Vec b) {
  return _mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ);
}
inline Mask greater(Vec a, Vec b) {
  return _mm512_cmp_ps_mask(a.v, b.v, _CMP_GT_OQ);
}
inline Mask greater_equal(Vec a, Vec b) {
  return _mm512_cmp_ps_mask(a.v, b.v, _CMP_GE_OQ);
}
inline Vec select(Mask m, Vec if_true, Vec if_false) {
  return {_mm512_mask_blend_ps(m, if_false.v, if_true.v)};
}
inline Vec round_nearest(Vec a) {
  return {_mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
}
inline Vec truncate(Vec a) {
  return {_mm512_roundscale_ps(a.v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC)};
}
inline Vec pow2_integer(Vec n) {
  const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n.v), _mm512_set1_epi32(127)), 23);
  return {_mm512_castsi512_ps(bits)};
}

// Transposes the 16 x 16 block held in rows[0..15] (row i, lane j) in place:
// afterwards rows[j] holds what was lane j of every row. Four rounds of
// shuffles: pairs of floats, pairs of pairs, then 128-bit lanes twice.
inline void transpose(Vec (&rows)[16]) {
  __m512 pairs[16], quads[16];
  for (int g = 0; g < 8; ++g) {
    pairs[2 * g] = _mm512_unpacklo_ps(rows[2 * g].v, rows[2 * g + 1].v);
    pairs[2 * g + 1] = _mm512_unpackhi_ps(rows[2 * g].v, rows[2 * g + 1].v);
  }
  // quads[4g + c], 128-bit lane k: column 4k + c of rows 4g .. 4g + 3
  for (int g = 0; g < 4; ++g) {
    const __m512d low = _mm512_castps_pd(pairs[4 * g]), high = _mm512_castps_pd(pairs[4 * g + 1]);
    const __m512d low2 = _mm512_castps_pd(pairs[4 * g + 2]), high2 = _mm512_castps_pd(pairs[4 * g + 3]);
    quads[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(low, low2));
    quads[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(low, low2));
    quads[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(high, high2));
    quads[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(high, high2));
  }
  for (int c = 0; c < 4; ++c) {
    const __m512 even_low = _mm512_shuffle_f32x4(quads[c], quads[4 + c], 0x88);
    const __m512 odd_low = _mm512_shuffle_f32x4(quads[c], quads[4 + c], 0xDD);
    const __m512 even_high = _mm512_shuffle_f32x4(quads[8 + c], quads[12 + c], 0x88);
    const __m512 odd_high = _mm512_shuffle_f32x4(quads[8 + c], quads[12 + c], 0xDD);
    rows[c].v = _mm512_shuffle_f32x4(even_low, even_high, 0x88);
    rows[8 + c].v = _mm512_shuffle_f32x4(even_low, even_high, 0xDD);
    rows[4 + c].v = _mm512_shuffle_f32x4(odd_low, odd_high, 0x88);
    rows[12 + c].v = _mm512_shuffle_f32x4(odd_low, odd_high, 0xDD);
  }
}

// 32-bit unsigned integer lanes, as many as Vec has floats (Philox streams).
struct VecU32 {
  __m512i v;
  static constexpr int width = 16;
  static VecU32 broadcast(std::uint32_t x) { return {_mm512_set1_epi32(static_cast<int>(x))}; }
  static VecU32 load(const std::uint32_t* p) { return {_mm512_loadu_si512(p)}; }
  void store(std::uint32_t* p) const { _mm512_storeu_si512(p, v); }
  static VecU32 lane_index() { return {_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)}; }
};

inline VecU32 operator+(VecU32 a, VecU32 b) {
  return {_mm512_add_epi32(a.v, b.v)};
}
inline VecU32 operator^(VecU32 a, VecU32 b) {
  return {_mm512_xor_si512(a.v, b.v)};
}
inline VecU32 shift_right(VecU32 a, int bits) {
  return {_mm512_srli_epi32(a.v, static_cast<unsigned>(bits))};
}
// The full 64-bit products a * b, lane by lane, split in their high and low
// words: vpmuludq multiplies the even lanes; the odd lanes are shifted down
// into even position for a second one.
inline void multiply_wide(VecU32 a, VecU32 b, VecU32& high, VecU32& low) {
  const __m512i even = _mm512_mul_epu32(a.v, b.v);
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a.v, 32), _mm512_srli_epi64(b.v, 32));
  high.v = _mm512_mask_blend_epi32(__mmask16(0xAAAA), _mm512_srli_epi64(even, 32), odd);
  low.v = _mm512_mask_blend_epi32(__mmask16(0xAAAA), even, _mm512_slli_epi64(odd, 32));
}
// Unsigned a >= b, as a Mask for select on Vec.
inline Mask greater_equal(VecU32 a, VecU32 b) {
  return _mm512_cmpge_epu32_mask(a.v, b.v);
}
// The lanes as floats; exact for values below 2^24.
inline Vec to_float(VecU32 a) {
  return {_mm512_cvtepi32_ps(a.v)};
}

// The sum of the lanes, halves folded onto each other (a tree: 4 dependent
// adds, not 15).
inline float reduce_add(Vec a) {
  const __m256 high = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a.v), 1));
  const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(a.v), high);
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// The largest lane: halves folded onto each other, 16 -> 8 -> 4 -> 2 -> 1
// (AVX-512F only: the upper half comes out through the 64-bit-lane extract).
inline float reduce_max(Vec a) {
  const __m256 high = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a.v), 1));
  const __m256 m8 = _mm256_max_ps(_mm512_castps512_ps256(a.v), high);
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(m8), _mm256_extractf128_ps(m8, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

}  // namespace attnkit::cpu::isa::ATTNKIT_ISA
