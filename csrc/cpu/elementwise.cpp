#include "cpu/elementwise.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "core/threading.h"
#include "cpu/dispatch.h"
#include "cpu/tiling.h"

namespace attnkit::cpu {

namespace {

template <typename T, typename Compare>
void compare_with(bool* out, const T* a, const T* b, const BroadcastLayout& layout, const Compare& compare) {
  const int dims = static_cast<int>(layout.sizes.size());
  const std::int64_t columns = layout.sizes[dims - 1];
  const std::int64_t a_step = layout.strides[0][dims - 1];
  const std::int64_t b_step = layout.strides[1][dims - 1];
  for_each_tile(
      layout, [&](std::int64_t out_offset, const std::int64_t* offsets, std::int64_t rows, std::int64_t tile_columns) {
        for (std::int64_t r = 0; r < rows; ++r) {
          bool* o = out + out_offset + r * columns;
          const T* x = a + offsets[0] + r * layout.strides[0][dims - 2];
          const T* y = b + offsets[1] + r * layout.strides[1][dims - 2];
          for (std::int64_t j = 0; j < tile_columns; ++j) o[j] = compare(x[j * a_step], y[j * b_step]);
        }
      });
}

// The float sums' chunks: a chunk is the unit of parallel work along the
// reduced dimension; its size depends only on the array's sizes, never on the
// thread count, so neither does the tree of partial sums.
constexpr std::int64_t kSumChunkElements = 32768;
constexpr std::int64_t kSumColumnBlock = 1024;  // a whole number of the kernels' 128-column tiles

}  // namespace

// ------------------------------------------------------------ broadcasting --

std::int64_t BroadcastLayout::numel() const {
  std::int64_t n = 1;
  for (std::int64_t size : sizes) n *= size;
  return n;
}

BroadcastLayout broadcast_layout(const std::vector<std::int64_t>& output,
                                 const std::vector<std::vector<std::int64_t>>& operands) {
  BroadcastLayout layout;
  layout.operands = static_cast<int>(operands.size());
  const int dims = static_cast<int>(output.size());
  // full[k][d]: operand k's stride along output dimension d.
  std::vector<std::int64_t> full[kMaxBroadcastOperands];
  for (int k = 0; k < layout.operands; ++k) {
    const std::vector<std::int64_t>& shape = operands[k];
    full[k].assign(dims, 0);
    std::int64_t stride = 1;
    const int lead = dims - static_cast<int>(shape.size());
    for (int d = dims - 1; d >= lead; --d) {
      const std::int64_t size = shape[d - lead];
      if (size != 1) full[k][d] = stride;
      stride *= size;
    }
  }
  for (int d = 0; d < dims; ++d) {
    if (output[d] == 1) continue;
    bool merges = !layout.sizes.empty();
    for (int k = 0; k < layout.operands && merges; ++k) merges = layout.strides[k].back() == full[k][d] * output[d];
    if (merges) {
      layout.sizes.back() *= output[d];
      for (int k = 0; k < layout.operands; ++k) layout.strides[k].back() = full[k][d];
    } else {
      layout.sizes.push_back(output[d]);
      for (int k = 0; k < layout.operands; ++k) layout.strides[k].push_back(full[k][d]);
    }
  }
  while (layout.sizes.size() < 2) {
    layout.sizes.insert(layout.sizes.begin(), 1);
    for (int k = 0; k < layout.operands; ++k) layout.strides[k].insert(layout.strides[k].begin(), 0);
  }
  return layout;
}

// ---------------------------------------------------------------- arithmetic --

void binary(float* out, const float* a, const float* b, const BroadcastLayout& layout, BinaryOp op) {
  const auto kernel = active_kernels().elementwise->binary_tile;
  const int dims = static_cast<int>(layout.sizes.size());
  const std::int64_t columns = layout.sizes[dims - 1];
  const std::int64_t a_row_stride = layout.strides[0][dims - 2];
  const std::int64_t b_row_stride = layout.strides[1][dims - 2];
  const int a_step = static_cast<int>(layout.strides[0][dims - 1]);
  const int b_step = static_cast<int>(layout.strides[1][dims - 1]);
  for_each_tile(
      layout, [&](std::int64_t out_offset, const std::int64_t* offsets, std::int64_t rows, std::int64_t tile_columns) {
        kernel(out + out_offset, a + offsets[0], b + offsets[1], rows, tile_columns, columns, a_row_stride,
               b_row_stride, a_step, b_step, op);
      });
}

void binary_scalar(float* out, const float* a, float scalar, std::int64_t n, bool scalar_first, BinaryOp op) {
  const auto kernel = active_kernels().elementwise->binary_tile;
  for_each_range(n, [&](std::int64_t begin, std::int64_t end) {
    if (scalar_first) kernel(out + begin, &scalar, a + begin, 1, end - begin, 0, 0, 0, 0, 1, op);
    else kernel(out + begin, a + begin, &scalar, 1, end - begin, 0, 0, 0, 1, 0, op);
  });
}

// ------------------------------------------------------------- comparisons --

template <typename T>
void compare(bool* out, const T* a, const T* b, const BroadcastLayout& layout, CompareOp op) {
  switch (op) {
    case CompareOp::equal: return compare_with(out, a, b, layout, [](T x, T y) { return x == y; });
    case CompareOp::not_equal: return compare_with(out, a, b, layout, [](T x, T y) { return x != y; });
    case CompareOp::less: return compare_with(out, a, b, layout, [](T x, T y) { return x < y; });
    case CompareOp::less_equal: return compare_with(out, a, b, layout, [](T x, T y) { return x <= y; });
    case CompareOp::greater: return compare_with(out, a, b, layout, [](T x, T y) { return x > y; });
    case CompareOp::greater_equal: return compare_with(out, a, b, layout, [](T x, T y) { return x >= y; });
  }
}

template void compare<float>(bool*, const float*, const float*, const BroadcastLayout&, CompareOp);
template void compare<std::int32_t>(bool*, const std::int32_t*, const std::int32_t*, const BroadcastLayout&, CompareOp);
template void compare<std::int64_t>(bool*, const std::int64_t*, const std::int64_t*, const BroadcastLayout&, CompareOp);
template void compare<bool>(bool*, const bool*, const bool*, const BroadcastLayout&, CompareOp);

template <typename T>
void where(T* out, const bool* condition, const T* a, const T* b, const BroadcastLayout& layout) {
  const int dims = static_cast<int>(layout.sizes.size());
  const std::int64_t columns = layout.sizes[dims - 1];
  const std::int64_t condition_step = layout.strides[0][dims - 1];
  const std::int64_t a_step = layout.strides[1][dims - 1];
  const std::int64_t b_step = layout.strides[2][dims - 1];
  for_each_tile(
      layout, [&](std::int64_t out_offset, const std::int64_t* offsets, std::int64_t rows, std::int64_t tile_columns) {
        for (std::int64_t r = 0; r < rows; ++r) {
          T* o = out + out_offset + r * columns;
          const bool* c = condition + offsets[0] + r * layout.strides[0][dims - 2];
          const T* x = a + offsets[1] + r * layout.strides[1][dims - 2];
          const T* y = b + offsets[2] + r * layout.strides[2][dims - 2];
          for (std::int64_t j = 0; j < tile_columns; ++j) o[j] = c[j * condition_step] ? x[j * a_step] : y[j * b_step];
        }
      });
}

template void where<std::uint8_t>(std::uint8_t*, const bool*, const std::uint8_t*, const std::uint8_t*,
                                  const BroadcastLayout&);
template void where<std::uint16_t>(std::uint16_t*, const bool*, const std::uint16_t*, const std::uint16_t*,
                                   const BroadcastLayout&);
template void where<std::uint32_t>(std::uint32_t*, const bool*, const std::uint32_t*, const std::uint32_t*,
                                   const BroadcastLayout&);
template void where<std::uint64_t>(std::uint64_t*, const bool*, const std::uint64_t*, const std::uint64_t*,
                                   const BroadcastLayout&);

// ---------------------------------------------------------------- reductions --

void sum(float* out, const float* x, std::int64_t outer, std::int64_t reduced, std::int64_t inner) {
  if (outer == 0 || inner == 0) return;
  if (reduced == 0) {
    fill(out, 0.0f, outer * inner);
    return;
  }
  const ElementwiseKernels& kernels = *active_kernels().elementwise;
  const auto sum_contiguous = kernels.sum_contiguous;
  const auto sum_columns = kernels.sum_columns;
  if (inner == 1) {
    const std::int64_t chunks = ceil_div(reduced, kSumChunkElements);
    if (chunks == 1) {
      parallel_for(outer, std::max<std::int64_t>(1, kUnitElements / reduced), [&](std::int64_t o0, std::int64_t o1) {
        for (std::int64_t o = o0; o < o1; ++o) out[o] = sum_contiguous(x + o * reduced, reduced);
      });
      return;
    }
    // Long rows: the chunks' sums first (in parallel), then each row's chunk sums.
    std::vector<float> partials(static_cast<std::size_t>(outer * chunks));
    parallel_for(outer * chunks, 1, [&](std::int64_t u0, std::int64_t u1) {
      for (std::int64_t u = u0; u < u1; ++u) {
        const std::int64_t o = u / chunks, begin = (u % chunks) * kSumChunkElements;
        partials[u] = sum_contiguous(x + o * reduced + begin, std::min(kSumChunkElements, reduced - begin));
      }
    });
    for (std::int64_t o = 0; o < outer; ++o) out[o] = sum_contiguous(partials.data() + o * chunks, chunks);
    return;
  }
  // Columns: out[o, i] sums a column of [reduced, inner]. A chunk is a band
  // of at least 64 rows holding about kSumChunkElements elements.
  const std::int64_t chunk_rows = std::max<std::int64_t>(64, kSumChunkElements / inner);
  const std::int64_t chunks = ceil_div(reduced, chunk_rows);
  const std::int64_t column_block = std::min(inner, kSumColumnBlock);
  const std::int64_t column_blocks = ceil_div(inner, column_block);
  // sums[o, chunk, i]: the chunk's column sums (the output itself when there is one chunk).
  std::vector<float> partials;
  float* sums = out;
  if (chunks > 1) {
    partials.resize(static_cast<std::size_t>(outer * chunks * inner));
    sums = partials.data();
  }
  const std::int64_t band_grain = ceil_div(kUnitElements, std::min(reduced, chunk_rows) * column_block);
  parallel_for(outer * chunks * column_blocks, band_grain, [&](std::int64_t u0, std::int64_t u1) {
    for (std::int64_t u = u0; u < u1; ++u) {
      const std::int64_t c0 = (u % column_blocks) * column_block;
      const std::int64_t chunk = (u / column_blocks) % chunks;
      const std::int64_t o = u / column_blocks / chunks;
      const std::int64_t r0 = chunk * chunk_rows;
      sum_columns(sums + (o * chunks + chunk) * inner + c0, x + (o * reduced + r0) * inner + c0,
                  std::min(chunk_rows, reduced - r0), std::min(column_block, inner - c0), inner);
    }
  });
  if (chunks == 1) return;
  const std::int64_t combine_grain = ceil_div(kUnitElements, chunks * column_block);
  parallel_for(outer * column_blocks, combine_grain, [&](std::int64_t u0, std::int64_t u1) {
    for (std::int64_t u = u0; u < u1; ++u) {
      const std::int64_t c0 = (u % column_blocks) * column_block;
      const std::int64_t o = u / column_blocks;
      sum_columns(out + o * inner + c0, sums + o * chunks * inner + c0, chunks, std::min(column_block, inner - c0),
                  inner);
    }
  });
}

template <typename T>
void sum_integer(std::int64_t* out, const T* x, std::int64_t outer, std::int64_t reduced, std::int64_t inner) {
  // Integer addition is associative (wrapping in uint64), so any order gives
  // the same result; threads take whole output rows.
  const std::int64_t grain = std::max<std::int64_t>(1, kUnitElements / std::max<std::int64_t>(1, reduced * inner));
  parallel_for(outer, grain, [&](std::int64_t o0, std::int64_t o1) {
    for (std::int64_t o = o0; o < o1; ++o) {
      std::uint64_t* row = reinterpret_cast<std::uint64_t*>(out + o * inner);
      std::fill(row, row + inner, std::uint64_t(0));
      for (std::int64_t r = 0; r < reduced; ++r) {
        const T* source = x + (o * reduced + r) * inner;
        for (std::int64_t i = 0; i < inner; ++i)
          row[i] += static_cast<std::uint64_t>(static_cast<std::int64_t>(source[i]));
      }
    }
  });
}

template void sum_integer<bool>(std::int64_t*, const bool*, std::int64_t, std::int64_t, std::int64_t);
template void sum_integer<std::int32_t>(std::int64_t*, const std::int32_t*, std::int64_t, std::int64_t, std::int64_t);
template void sum_integer<std::int64_t>(std::int64_t*, const std::int64_t*, std::int64_t, std::int64_t, std::int64_t);

void max_last_dim(float* values, std::int64_t* indices, const float* x, std::int64_t rows, std::int64_t columns) {
  parallel_for(rows, std::max<std::int64_t>(1, kUnitElements / columns), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const float* row = x + r * columns;
      float best = row[0];
      std::int64_t where_best = 0;
      for (std::int64_t c = 1; c < columns && !std::isnan(best); ++c) {
        if (row[c] > best || std::isnan(row[c])) {
          best = row[c];
          where_best = c;
        }
      }
      values[r] = best;
      indices[r] = where_best;
    }
  });
}

// ------------------------------------------------------- casts, fill, range --

namespace {

template <typename From, typename To>
To convert(From value) {
  if constexpr (std::is_same_v<To, bool>) {
    return value != From(0);
  } else if constexpr (std::is_floating_point_v<From> && std::is_integral_v<To>) {
    // [-2^63, 2^63) and [-2^31, 2^31) are exact in float; outside them (and
    // for NaN) the conversion is undefined in C++, so the limits are taken.
    constexpr float low = static_cast<float>(std::numeric_limits<To>::min());
    constexpr float high = -low;
    if (std::isnan(value)) return To(0);
    if (value < low) return std::numeric_limits<To>::min();
    if (value >= high) return std::numeric_limits<To>::max();
    return static_cast<To>(value);
  } else {
    return static_cast<To>(value);
  }
}

}  // namespace

template <typename From, typename To>
void cast(To* out, const From* x, std::int64_t n) {
  for_each_range(n, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) out[i] = convert<From, To>(x[i]);
  });
}

#define ATTNKIT_INSTANTIATE_CAST(From)                                              \
  template void cast<From, float>(float*, const From*, std::int64_t);               \
  template void cast<From, std::int32_t>(std::int32_t*, const From*, std::int64_t); \
  template void cast<From, std::int64_t>(std::int64_t*, const From*, std::int64_t); \
  template void cast<From, bool>(bool*, const From*, std::int64_t);
ATTNKIT_INSTANTIATE_CAST(float)
ATTNKIT_INSTANTIATE_CAST(std::int32_t)
ATTNKIT_INSTANTIATE_CAST(std::int64_t)
ATTNKIT_INSTANTIATE_CAST(bool)
#undef ATTNKIT_INSTANTIATE_CAST

template <typename T>
void fill(T* out, T value, std::int64_t n) {
  for_each_range(n, [&](std::int64_t begin, std::int64_t end) { std::fill(out + begin, out + end, value); });
}

template void fill<float>(float*, float, std::int64_t);
template void fill<std::int32_t>(std::int32_t*, std::int32_t, std::int64_t);
template void fill<std::int64_t>(std::int64_t*, std::int64_t, std::int64_t);
template void fill<bool>(bool*, bool, std::int64_t);

void arange(float* out, double start, double step, std::int64_t n) {
  for_each_range(n, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) out[i] = static_cast<float>(start + static_cast<double>(i) * step);
  });
}

template <typename T>
void arange(T* out, std::int64_t start, std::int64_t step, std::int64_t n) {
  for_each_range(n, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) out[i] = static_cast<T>(start + i * step);
  });
}

template void arange<std::int32_t>(std::int32_t*, std::int64_t, std::int64_t, std::int64_t);
template void arange<std::int64_t>(std::int64_t*, std::int64_t, std::int64_t, std::int64_t);

}  // namespace attnkit::cpu
