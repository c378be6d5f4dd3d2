// The GEMM micro- and macro-kernels over a Vec (see vec/vec_generic.h), written
// once and compiled per ISA. Include a vec_<isa>.h first.
//
// A register tile holds MR rows x NV vectors of C in accumulators. Each step of
// k loads NV vectors of the packed B sliver and broadcasts MR values of the
// packed A sliver: MR*NV FMAs for NV + MR loads, so the tile is as large as the
// register file allows (accumulators + NV B vectors + 1 broadcast).
#pragma once

#include <cstdint>

#include "cpu/activation_kernels.h"
#include "cpu/gemm.h"

namespace attnkit::cpu::gemm_kernels {

template <class V>
inline V apply_activation(V x, GemmActivation activation) {
  switch (activation) {
    case GemmActivation::none: return x;
    case GemmActivation::relu: return max(V::broadcast(0.0f), x);  // NaN stays NaN
    case GemmActivation::gelu: return activation_kernels::gelu_exact(x);
    case GemmActivation::gelu_tanh: return activation_kernels::gelu_tanh(x);
  }
  return x;
}

// Loads/stores `count` floats: a whole vector, or the first count lanes.
template <class V>
inline V load_columns(const float* p, int count) {
  return count == V::width ? V::load(p) : V::load_partial(p, count);
}
template <class V>
inline void store_columns(V x, float* p, int count) {
  if (count == V::width) x.store(p); else x.store_partial(p, count);
}

// Writes the accumulators of the tile at (row, col) into C: alpha*acc, plus
// beta*C on the first k block (C is not read when beta = 0) or plus C on later
// ones; on the last k block, the bias and the activation.
template <class V, int MR, int NV>
inline void store_tile(const GemmMacroTile& t, V (&acc)[MR][NV], std::int64_t row, std::int64_t col) {
  constexpr int W = V::width;
  const int rows = static_cast<int>(t.m - row < MR ? t.m - row : MR);
  const V alpha = V::broadcast(t.alpha);
  const V beta = V::broadcast(t.beta);
  for (int i = 0; i < rows; ++i) {
    float* c_row = t.c + (row + i) * t.ldc + col;
    for (int v = 0; v < NV; ++v) {
      const std::int64_t left = t.n - col - v * W;
      if (left <= 0) break;
      const int cols = left < W ? static_cast<int>(left) : W;
      float* c_ptr = c_row + v * W;
      V r = acc[i][v] * alpha;
      if (!t.first_k) {
        r = r + load_columns<V>(c_ptr, cols);
      } else if (t.beta != 0.0f) {
        r = fma(beta, load_columns<V>(c_ptr, cols), r);
      }
      if (t.last_k) {
        if (t.bias != nullptr) r = r + load_columns<V>(t.bias + col + v * W, cols);
        if (t.pre_activation != nullptr)
          store_columns(r, t.pre_activation + (row + i) * t.ldc + col + v * W, cols);
        r = apply_activation(r, t.activation);
      }
      store_columns(r, c_ptr, cols);
    }
  }
}

// acc = (kc x MR sliver of A)^T (kc x NR sliver of B), then into C.
template <class V, int MR, int NV>
inline void micro_tile(const GemmMacroTile& t, const float* a, const float* b, std::int64_t row,
                       std::int64_t col) {
  constexpr int W = V::width;
  constexpr int NR = NV * W;
  V acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = V::broadcast(0.0f);
  for (std::int64_t p = 0; p < t.kc; ++p) {
    V bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = V::load(b + p * NR + v * W);
    for (int i = 0; i < MR; ++i) {
      const V ai = V::broadcast(a[p * MR + i]);
      for (int v = 0; v < NV; ++v) acc[i][v] = fma(ai, bv[v], acc[i][v]);
    }
  }
  store_tile<V, MR, NV>(t, acc, row, col);
}

// All register tiles of one packed A block x one packed B panel. The B sliver
// (kc x NR) stays in L1 while the loop over rows streams the A block from L2.
template <class V, int MR, int NV>
inline void macro_kernel(const GemmMacroTile& t) {
  constexpr int NR = NV * V::width;
  for (std::int64_t col = 0; col < t.n; col += NR) {
    const float* b = t.packed_b + (col / NR) * t.kc * NR;
    for (std::int64_t row = 0; row < t.m; row += MR)
      micro_tile<V, MR, NV>(t, t.packed_a + (row / MR) * t.kc * MR, b, row, col);
  }
}

}  // namespace attnkit::cpu::gemm_kernels
