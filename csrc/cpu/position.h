// CPU kernels of the positional encodings: the sinusoidal table and rotary
// position embedding (RoPE). cos and sin are computed in double (see
// for_each_position in position.cpp) and only then rounded to float, so
// positions in the thousands keep full float accuracy (a float angle near
// 1000 would already be off by up to 3e-5).
#pragma once

#include <cstdint>

namespace attnkit::cpu {

// table[t, j], t < length, j < dim: with p = offset + t and i = j / 2,
// sin(p * 10000^(-2i/dim)) for even j and cos(...) for odd j.
void sinusoidal_position_encoding(float* table, std::int64_t length, std::int64_t dim, std::int64_t offset);

// RoPE on x [B, T, H, D] (D even): row (b, t) sits at position p =
// positions[b * T + t], or offset + t when positions is null, and its pair i
// (i < D/2) is rotated by theta = p * w_i, where w_i = frequencies[i], or
// base^(-2i/D) when frequencies is null:
//   (a, b) -> (a cos theta - b sin theta, a sin theta + b cos theta),
// where the pair is (x[2i], x[2i+1]) when interleaved, else (x[i], x[i+D/2]).
// inverse rotates by -theta instead (the backward pass). y may alias x.
void rope(float* y, const float* x, std::int64_t B, std::int64_t T, std::int64_t H, std::int64_t D,
          const std::int64_t* positions, std::int64_t offset, const double* frequencies, double base, bool interleaved,
          bool inverse);

}  // namespace attnkit::cpu
