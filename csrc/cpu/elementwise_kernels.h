// The float arithmetic and sum kernels over a Vec, written once and compiled
// per ISA (isa/elementwise.cpp). Include a vec_<isa>.h first.
//
// Every add, subtract, multiply and divide is one IEEE operation, so the
// arithmetic is bitwise the same on every ISA (and as numpy's float32). The
// sums are pairwise trees whose shape depends on the sizes alone: the same
// bits for any thread count (not across ISAs, whose vectors differ in width).
#pragma once

#include <cstdint>

#include "cpu/elementwise.h"

namespace attnkit::cpu::elementwise_kernels {

struct Add {
  template <class V>
  static V apply(V a, V b) {
    return a + b;
  }
};
struct Subtract {
  template <class V>
  static V apply(V a, V b) {
    return a - b;
  }
};
struct Multiply {
  template <class V>
  static V apply(V a, V b) {
    return a * b;
  }
};
struct Divide {
  template <class V>
  static V apply(V a, V b) {
    return a / b;
  }
};

// out[c] = a[c * a_step] op b[c * b_step] for c < n; a_step and b_step are
// 0 or 1. Each vector is loaded before it is stored, so out may be a or b.
template <class V, class Op>
inline void binary_run(float* out, const float* a, const float* b, std::int64_t n, int a_step, int b_step) {
  constexpr int W = V::width;
  std::int64_t i = 0;
  if (a_step != 0 && b_step != 0) {
    for (; i + W <= n; i += W) Op::apply(V::load(a + i), V::load(b + i)).store(out + i);
    if (i < n) {
      const int rest = static_cast<int>(n - i);
      Op::apply(V::load_partial(a + i, rest), V::load_partial(b + i, rest)).store_partial(out + i, rest);
    }
  } else if (a_step != 0) {
    const V repeated = V::broadcast(*b);
    for (; i + W <= n; i += W) Op::apply(V::load(a + i), repeated).store(out + i);
    if (i < n) {
      const int rest = static_cast<int>(n - i);
      Op::apply(V::load_partial(a + i, rest), repeated).store_partial(out + i, rest);
    }
  } else if (b_step != 0) {
    const V repeated = V::broadcast(*a);
    for (; i + W <= n; i += W) Op::apply(repeated, V::load(b + i)).store(out + i);
    if (i < n) {
      const int rest = static_cast<int>(n - i);
      Op::apply(repeated, V::load_partial(b + i, rest)).store_partial(out + i, rest);
    }
  } else {
    const V value = Op::apply(V::broadcast(*a), V::broadcast(*b));
    for (; i + W <= n; i += W) value.store(out + i);
    if (i < n) value.store_partial(out + i, static_cast<int>(n - i));
  }
}

template <class V, class Op>
inline void binary_tile_with(float* out, const float* a, const float* b, std::int64_t rows, std::int64_t columns,
                             std::int64_t out_row_stride, std::int64_t a_row_stride, std::int64_t b_row_stride,
                             int a_step, int b_step) {
  for (std::int64_t r = 0; r < rows; ++r)
    binary_run<V, Op>(out + r * out_row_stride, a + r * a_row_stride, b + r * b_row_stride, columns, a_step, b_step);
}

template <class V>
inline void binary_tile(float* out, const float* a, const float* b, std::int64_t rows, std::int64_t columns,
                        std::int64_t out_row_stride, std::int64_t a_row_stride, std::int64_t b_row_stride, int a_step,
                        int b_step, BinaryOp op) {
  switch (op) {
    case BinaryOp::add:
      return binary_tile_with<V, Add>(out, a, b, rows, columns, out_row_stride, a_row_stride, b_row_stride, a_step,
                                      b_step);
    case BinaryOp::subtract:
      return binary_tile_with<V, Subtract>(out, a, b, rows, columns, out_row_stride, a_row_stride, b_row_stride, a_step,
                                           b_step);
    case BinaryOp::multiply:
      return binary_tile_with<V, Multiply>(out, a, b, rows, columns, out_row_stride, a_row_stride, b_row_stride, a_step,
                                           b_step);
    case BinaryOp::divide:
      return binary_tile_with<V, Divide>(out, a, b, rows, columns, out_row_stride, a_row_stride, b_row_stride, a_step,
                                         b_step);
  }
}

// ---------------------------------------------------------------- sums --

// The leaves of the contiguous sum: 128 floats go to 8 vector accumulators,
// so each lane adds at most 16 / W terms in a row (W = 1: 16 terms, the error
// numpy's pairwise sum also allows at its leaves).
constexpr std::int64_t kPairwiseLeaf = 128;
constexpr int kLeafAccumulators = 8;

// The lanes' sums of x[0, n), n <= kPairwiseLeaf, as one vector.
template <class V>
inline V sum_leaf(const float* x, std::int64_t n) {
  constexpr int W = V::width;
  V partial[kLeafAccumulators];
  for (int k = 0; k < kLeafAccumulators; ++k) partial[k] = V::broadcast(0.0f);
  std::int64_t i = 0;
  for (; i + kLeafAccumulators * W <= n; i += kLeafAccumulators * W)
    for (int k = 0; k < kLeafAccumulators; ++k) partial[k] = partial[k] + V::load(x + i + k * W);
  for (int k = 0; k < kLeafAccumulators && i + k * W < n; ++k)
    partial[k] = partial[k] + V::load_partial(x + i + k * W, static_cast<int>(n - i - k * W));
  for (int span = kLeafAccumulators / 2; span > 0; span /= 2)
    for (int k = 0; k < span; ++k) partial[k] = partial[k] + partial[k + span];
  return partial[0];
}

// Splits at a leaf boundary near the middle, so every leaf but the last is full.
template <class V>
inline V sum_tree(const float* x, std::int64_t n) {
  if (n <= kPairwiseLeaf) return sum_leaf<V>(x, n);
  const std::int64_t leaves = (n + kPairwiseLeaf - 1) / kPairwiseLeaf;
  const std::int64_t half = (leaves / 2) * kPairwiseLeaf;
  return sum_tree<V>(x, half) + sum_tree<V>(x + half, n - half);
}

// The vector's lanes folded pairwise: W -> W/2 -> ... -> 1.
template <class V>
inline float sum_lanes(V v) {
  float lanes[V::width];
  v.store(lanes);
  for (int span = V::width / 2; span > 0; span /= 2)
    for (int k = 0; k < span; ++k) lanes[k] += lanes[k + span];
  return lanes[0];
}

template <class V>
inline float sum_contiguous(const float* x, std::int64_t n) {
  return sum_lanes(sum_tree<V>(x, n));
}

// sum_columns works on tiles of 128 columns: a tile reads 512 contiguous
// bytes of each row (narrower tiles measured up to 2x slower once the rows
// come from memory: too little of each line run per stream), and its stack
// of partial sums (40 levels x 512 bytes) stays in L1/L2; 128 is a whole
// number of vectors on every ISA. Blocks of 8 rows are added plainly; the
// block sums are then merged as the bits of a binary counter: after 2^k
// blocks, level k holds their sum, so the tree is balanced and depends on
// rows alone.
constexpr int kColumnTile = 128;
constexpr std::int64_t kRowsPerBlock = 8;
constexpr int kMaxLevels = 40;  // 8 * 2^40 rows: more than any array holds

template <class V>
inline void sum_columns(float* out, const float* x, std::int64_t rows, std::int64_t columns, std::int64_t row_stride) {
  constexpr int W = V::width;
  static_assert(kColumnTile % W == 0, "a column tile is a whole number of vectors");
  for (std::int64_t c0 = 0; c0 < columns; c0 += kColumnTile) {
    const int width = static_cast<int>(columns - c0 < kColumnTile ? columns - c0 : kColumnTile);
    float levels[kMaxLevels][kColumnTile];
    float block[kColumnTile];
    std::uint64_t blocks_done = 0;
    for (std::int64_t r0 = 0; r0 < rows; r0 += kRowsPerBlock) {
      const std::int64_t block_rows = rows - r0 < kRowsPerBlock ? rows - r0 : kRowsPerBlock;
      const float* first = x + r0 * row_stride + c0;
      for (int j = 0; j < width; j += W) {
        const int lanes = width - j < W ? width - j : W;
        V acc = V::load_partial(first + j, lanes);
        for (std::int64_t r = 1; r < block_rows; ++r) acc = acc + V::load_partial(first + r * row_stride + j, lanes);
        acc.store(block + j);
      }
      int level = 0;
      for (; (blocks_done >> level) & 1u; ++level)
        for (int j = 0; j < width; j += W) (V::load(levels[level] + j) + V::load(block + j)).store(block + j);
      for (int j = 0; j < width; j += W) V::load(block + j).store(levels[level] + j);
      ++blocks_done;
    }
    // The occupied levels, the earliest rows (highest level) first.
    for (int j = 0; j < width; j += W) {
      V total = V::broadcast(0.0f);
      bool empty = true;
      for (int level = kMaxLevels - 1; level >= 0; --level) {
        if (!((blocks_done >> level) & 1u)) continue;
        total = empty ? V::load(levels[level] + j) : total + V::load(levels[level] + j);
        empty = false;
      }
      total.store_partial(out + c0 + j, width - j < W ? width - j : W);
    }
  }
}

}  // namespace attnkit::cpu::elementwise_kernels
