// The int8-weight kernels of one ISA (see isa.h). The dynamic-quantization
// kernels need AVX512-VNNI (vpdpbusd); a tier compiled without it has none,
// and the driver keeps to the int8-weight path there.
#include "cpu/isa/isa.h"

#include <cmath>
#include <cstring>

#include "cpu/quantized.h"
#include "cpu/quantized_kernels.h"

namespace attnkit::cpu::isa::ATTNKIT_ISA {

namespace {

#ifdef __AVX512VNNI__

// See QuantizedKernels::quantize_rows_dynamic.
void quantize_rows_dynamic(std::uint8_t* xq, float* x_scales, const float* x, std::int64_t rows, std::int64_t k) {
  const std::int64_t ldq = (k + 3) / 4 * 4;
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * k;
    std::uint8_t* out = xq + r * ldq;
    __m512 largest = _mm512_setzero_ps();
    __mmask16 nan = 0;
    for (std::int64_t p = 0; p < k; p += 16) {
      const __mmask16 lanes = k - p >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (k - p)) - 1);
      const __m512 v = _mm512_maskz_loadu_ps(lanes, row + p);
      largest = _mm512_max_ps(largest, _mm512_abs_ps(v));
      nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    }
    // max drops a NaN operand: a row with NaN gets a NaN scale instead, so
    // its outputs are NaN as in float32.
    const float scale = nan != 0 ? NAN : _mm512_reduce_max_ps(largest) / 127.0f;
    x_scales[r] = scale;
    // A zero row divides by 1 (all values 0); non-finite scales give
    // non-finite outputs through x_scales whatever the bytes are.
    const __m512 divisor = _mm512_set1_ps(scale > 0.0f && std::isfinite(scale) ? scale : 1.0f);
    const __m512i offset = _mm512_set1_epi32(128);
    const __m512i low = _mm512_set1_epi32(-127), high = _mm512_set1_epi32(127);
    for (std::int64_t p = 0; p < k; p += 16) {
      const __mmask16 lanes = k - p >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (k - p)) - 1);
      // Round to nearest, ties to even (the default rounding mode), then
      // clamp: |x / scale| <= 127 up to the division's rounding.
      __m512i q = _mm512_cvtps_epi32(_mm512_div_ps(_mm512_maskz_loadu_ps(lanes, row + p), divisor));
      q = _mm512_min_epi32(_mm512_max_epi32(q, low), high);
      _mm512_mask_cvtepi32_storeu_epi8(out + p, lanes, _mm512_add_epi32(q, offset));
    }
    for (std::int64_t p = k; p < ldq; ++p) out[p] = 128;  // zero; the packed weight is zero there too
  }
}

// One tile: kDynamicRows rows of xq against 16 * 2 weight rows per step of
// columns, int32 accumulators in 16 zmm registers.
void dynamic_tile(const QuantizedDynamicTile& t) {
  constexpr int R = static_cast<int>(kDynamicRows);
  constexpr int V = static_cast<int>(kDynamicColumns / 16);
  const std::int64_t sliver_bytes = t.k4 * 64;
  for (std::int64_t col = t.col0; col < t.col1; col += kDynamicColumns) {
    const std::int8_t* w = t.packed + (col / 16) * sliver_bytes;
    __m512i acc[R][V];
    for (int i = 0; i < R; ++i)
      for (int v = 0; v < V; ++v) acc[i][v] = _mm512_setzero_si512();
    for (std::int64_t g = 0; g < t.k4; ++g) {
      __m512i wv[V];
      for (int v = 0; v < V; ++v) wv[v] = _mm512_loadu_si512(w + v * sliver_bytes + g * 64);
      for (int i = 0; i < R; ++i) {
        std::int32_t four;
        std::memcpy(&four, t.xq + i * t.ldq + g * 4, 4);
        const __m512i a = _mm512_set1_epi32(four);
        for (int v = 0; v < V; ++v) acc[i][v] = _mm512_dpbusd_epi32(acc[i][v], a, wv[v]);
      }
    }
    // A copy for the loop below (run-time bounds), as in gemm_kernels.h.
    __m512i finished[R][V];
    for (int i = 0; i < R; ++i)
      for (int v = 0; v < V; ++v) finished[i][v] = acc[i][v];
    for (int v = 0; v < V; ++v) {
      const std::int64_t first = col + v * 16;
      if (first >= t.col1) break;
      const __mmask16 lanes = t.col1 - first >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (t.col1 - first)) - 1);
      // sum (xq + 128) q - 128 sum q = sum xq q
      const __m512i correction = _mm512_slli_epi32(_mm512_maskz_loadu_epi32(lanes, t.row_sums + first), 7);
      const __m512 w_scales = _mm512_maskz_loadu_ps(lanes, t.scales + first);
      for (std::int64_t i = 0; i < t.rows; ++i) {
        const __m512 dot = _mm512_cvtepi32_ps(_mm512_sub_epi32(finished[i][v], correction));
        const __m512 scale = _mm512_mul_ps(_mm512_set1_ps(t.x_scales[i]), w_scales);
        _mm512_mask_storeu_ps(t.y + i * t.ldy + first, lanes, _mm512_mul_ps(scale, dot));
      }
    }
  }
}

constexpr auto kQuantizeRowsDynamic = &quantize_rows_dynamic;
constexpr auto kDynamicTile = &dynamic_tile;

#else

constexpr void (*kQuantizeRowsDynamic)(std::uint8_t*, float*, const float*, std::int64_t, std::int64_t) = nullptr;
constexpr void (*kDynamicTile)(const QuantizedDynamicTile&) = nullptr;

#endif

}  // namespace

const QuantizedKernels quantized_table = {
    quantized_kernels::decode_int8<Vec>,
    quantized_kernels::dequantize_int8_rows<Vec>,
    kQuantizeRowsDynamic,
    kDynamicTile,
};

}  // namespace attnkit::cpu::isa::ATTNKIT_ISA
