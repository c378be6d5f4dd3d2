// The int8-weight kernels over a Vec (see vec/vec_generic.h), written once and
// compiled per ISA. Include a vec_<isa>.h first.
#pragma once

#include <cstdint>

#include "cpu/quantized.h"
#include "cpu/vec/vec_math.h"

namespace attnkit::cpu::quantized_kernels {

// `lanes` int8 values widened to floats, zeros past them (a row's tail: the
// bytes past the row are never read).
template <class V>
inline V load_int8_columns(const std::int8_t* p, int lanes) {
  if (lanes == V::width) return V::load_int8(p);
  std::int8_t tail[V::width] = {};
  for (int i = 0; i < lanes; ++i) tail[i] = p[i];
  return V::load_int8(tail);
}

// y[i, j] = scales[j] * dot(x[i, :], q[j, :]) for R rows of x and 4 rows of
// q (the fp32 decode_dot of gemm_kernels.h with 1-byte weights). Rows of q
// past `q_rows` repeat the last one and are not written. While the last group
// of rows of x passes, the next rows of q are requested, so that memory stays
// busy while this group reads its rows from L1.
template <class V, int R>
inline void decode_dot_int8(float* y, std::int64_t ldy, const float* x, std::int64_t ldx, const std::int8_t* q,
                            const float* scales, const std::int8_t* next_q, int next_rows, int q_rows, std::int64_t k) {
  constexpr int W = V::width;
  const std::int8_t* qrow[4];
  for (int j = 0; j < 4; ++j) qrow[j] = q + (j < q_rows ? j : q_rows - 1) * k;
  V acc[R][4];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < 4; ++j) acc[i][j] = V::broadcast(0.0f);
  std::int64_t p = 0;
  for (; p + W <= k; p += W) {
    // One cache line of q holds 64 weights: prefetch once per line.
    if (next_q != nullptr && p % 64 == 0)
      for (int j = 0; j < next_rows; ++j) __builtin_prefetch(next_q + j * k + p, 0, 3);
    V qv[4];
    for (int j = 0; j < 4; ++j) qv[j] = V::load_int8(qrow[j] + p);
    for (int i = 0; i < R; ++i) {
      const V xv = V::load(x + i * ldx + p);
      for (int j = 0; j < 4; ++j) acc[i][j] = fma(xv, qv[j], acc[i][j]);
    }
  }
  if (p < k) {  // the tail: zeros past k
    const int lanes = static_cast<int>(k - p);
    V qv[4];
    for (int j = 0; j < 4; ++j) qv[j] = load_int8_columns<V>(qrow[j] + p, lanes);
    for (int i = 0; i < R; ++i) {
      const V xv = V::load_partial(x + i * ldx + p, lanes);
      for (int j = 0; j < 4; ++j) acc[i][j] = fma(xv, qv[j], acc[i][j]);
    }
  }
  // A copy for the loop below, whose run-time bound would otherwise keep
  // `acc` in memory and store every accumulator on every step above.
  V finished[R][4];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < 4; ++j) finished[i][j] = acc[i][j];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < q_rows; ++j) y[i * ldy + j] = scales[j] * vec_math::lane_sum(finished[i][j]);
}

// y[0:m, col0:col1], 4 rows of q at a time against groups of up to 4 rows of
// x (the 4 rows of q stay in L1 while the groups pass).
template <class V>
inline void decode_int8(const QuantizedDecodeRange& r) {
  for (std::int64_t j = r.col0; j < r.col1; j += 4) {
    const int q_rows = r.col1 - j < 4 ? static_cast<int>(r.col1 - j) : 4;
    for (std::int64_t i = 0; i < r.m; i += 4) {
      float* out = r.y + i * r.ldy + j;
      const float* x_rows = r.x + i * r.ldx;
      const std::int8_t* q_rows_ptr = r.q + j * r.k;
      const float* scales = r.scales + j;
      const bool last_group = i + 4 >= r.m;
      const std::int8_t* next = last_group && j + 4 < r.col1 ? r.q + (j + 4) * r.k : nullptr;
      const int next_rows = next == nullptr ? 0 : static_cast<int>(r.col1 - j - 4 < 4 ? r.col1 - j - 4 : 4);
      switch (r.m - i < 4 ? r.m - i : 4) {
        case 1:
          decode_dot_int8<V, 1>(out, r.ldy, x_rows, r.ldx, q_rows_ptr, scales, next, next_rows, q_rows, r.k);
          break;
        case 2:
          decode_dot_int8<V, 2>(out, r.ldy, x_rows, r.ldx, q_rows_ptr, scales, next, next_rows, q_rows, r.k);
          break;
        case 3:
          decode_dot_int8<V, 3>(out, r.ldy, x_rows, r.ldx, q_rows_ptr, scales, next, next_rows, q_rows, r.k);
          break;
        default:
          decode_dot_int8<V, 4>(out, r.ldy, x_rows, r.ldx, q_rows_ptr, scales, next, next_rows, q_rows, r.k);
          break;
      }
    }
  }
}

template <class V>
inline void dequantize_int8_rows(float* out, const std::int8_t* q, const float* scales, std::int64_t rows,
                                 std::int64_t k) {
  constexpr int W = V::width;
  for (std::int64_t r = 0; r < rows; ++r) {
    const V scale = V::broadcast(scales[r]);
    const std::int8_t* row = q + r * k;
    float* dst = out + r * k;
    std::int64_t p = 0;
    for (; p + W <= k; p += W) (scale * V::load_int8(row + p)).store(dst + p);
    if (p < k) {
      const int lanes = static_cast<int>(k - p);
      (scale * load_int8_columns<V>(row + p, lanes)).store_partial(dst + p, lanes);
    }
  }
}

}  // namespace attnkit::cpu::quantized_kernels
