#include "cpu/shape.h"

#include <algorithm>
#include <cstring>

#include "core/threading.h"
#include "cpu/elementwise.h"
#include "cpu/tiling.h"

namespace attnkit::cpu {
namespace {

// Copies of 64 KB are worth a thread (kUnitElements floats).
constexpr std::int64_t kUnitBytes = kUnitElements * 4;
// Transposed copies go through 32 x 32 element tiles: the 32 source lines a
// tile reads stay in L1 while each is used 32 times, and the destination is
// written a line at a time.
constexpr std::int64_t kTransposeTile = 32;

// The element types the copies move, by size.
template <typename Body>
void with_element_type(std::size_t element_size, const Body& body) {
  switch (element_size) {
    case 1: body(std::uint8_t()); break;
    case 2: body(std::uint16_t()); break;
    case 4: body(std::uint32_t()); break;
    default: body(std::uint64_t()); break;
  }
}

// The scatter-adds of the index backwards (index_select, gather): each of
// `outer` slabs takes `count` source rows of `inner` columns. A unit owns a
// block of columns of one slab and adds every row into it in order, so no
// two units write the same element and the sums do not depend on the thread
// count; the block size only spreads the work. body(o, c0, c1) adds the rows
// into columns [c0, c1) of slab o.
template <typename Body>
void for_each_column_block(std::int64_t outer, std::int64_t inner, std::int64_t count, const Body& body) {
  if (inner == 0) return;
  const std::int64_t block =
      std::min(inner, std::max<std::int64_t>(64, kUnitElements / std::max<std::int64_t>(1, count)));
  const std::int64_t blocks = ceil_div(inner, block);
  parallel_for(outer * blocks, 1, [&](std::int64_t u0, std::int64_t u1) {
    for (std::int64_t u = u0; u < u1; ++u) {
      const std::int64_t o = u / blocks, c0 = (u % blocks) * block;
      body(o, c0, std::min(inner, c0 + block));
    }
  });
}

// x's walk as a one-operand layout: size-1 dimensions dropped, neighbours
// merged where x steps through them as through one dimension, at least two
// dimensions.
BroadcastLayout coalesce(const std::vector<std::int64_t>& sizes, const std::vector<std::int64_t>& strides) {
  BroadcastLayout layout;
  layout.operands = 1;
  std::vector<std::int64_t>& walk = layout.strides[0];
  for (std::size_t d = 0; d < sizes.size(); ++d) {
    if (sizes[d] == 1) continue;
    if (!layout.sizes.empty() && walk.back() == strides[d] * sizes[d]) {
      layout.sizes.back() *= sizes[d];
      walk.back() = strides[d];
    } else {
      layout.sizes.push_back(sizes[d]);
      walk.push_back(strides[d]);
    }
  }
  while (layout.sizes.size() < 2) {
    layout.sizes.insert(layout.sizes.begin(), 1);
    walk.insert(walk.begin(), 0);
  }
  return layout;
}

// Row by row: whole runs when x is contiguous along out's last dimension, one
// repeated value when it is broadcast there, else element by element.
template <typename T>
void copy_by_rows(T* out, const T* x, const BroadcastLayout& layout) {
  const int dims = static_cast<int>(layout.sizes.size());
  const std::int64_t columns = layout.sizes[dims - 1];
  const std::int64_t row_stride = layout.strides[0][dims - 2];
  const std::int64_t step = layout.strides[0][dims - 1];
  for_each_tile(
      layout, [&](std::int64_t out_offset, const std::int64_t* offsets, std::int64_t rows, std::int64_t tile_columns) {
        for (std::int64_t r = 0; r < rows; ++r) {
          T* o = out + out_offset + r * columns;
          const T* source = x + offsets[0] + r * row_stride;
          if (step == 1) std::memcpy(o, source, static_cast<std::size_t>(tile_columns) * sizeof(T));
          else if (step == 0) std::fill(o, o + tile_columns, *source);
          else
            for (std::int64_t c = 0; c < tile_columns; ++c) o[c] = source[c * step];
        }
      });
}

// The transpose pattern: x is contiguous along dimension `unit` of out (not
// the last), so out's rows gather from many source lines. Each unit of work is
// one tile [p, q] of (dimension unit, last dimension) for one index of the
// remaining (batch) dimensions.
template <typename T>
void copy_transposed(T* out, const T* x, const BroadcastLayout& layout, int unit) {
  const int dims = static_cast<int>(layout.sizes.size());
  const int last = dims - 1;
  std::vector<std::int64_t> out_strides(dims, 1);
  for (int d = dims - 2; d >= 0; --d) out_strides[d] = out_strides[d + 1] * layout.sizes[d + 1];
  const std::vector<std::int64_t>& x_strides = layout.strides[0];
  const std::int64_t P = layout.sizes[unit], Q = layout.sizes[last];
  const std::int64_t q_step = x_strides[last];
  const std::int64_t p_blocks = ceil_div(P, kTransposeTile), q_blocks = ceil_div(Q, kTransposeTile);
  const std::int64_t batches = layout.numel() / (P * Q);
  const std::int64_t grain = ceil_div(kUnitElements, kTransposeTile * kTransposeTile);
  parallel_for(batches * p_blocks * q_blocks, grain, [&](std::int64_t u0, std::int64_t u1) {
    for (std::int64_t u = u0; u < u1; ++u) {
      const std::int64_t q0 = (u % q_blocks) * kTransposeTile;
      const std::int64_t p0 = ((u / q_blocks) % p_blocks) * kTransposeTile;
      std::int64_t batch = u / q_blocks / p_blocks;
      std::int64_t out_offset = p0 * out_strides[unit] + q0, x_offset = p0 + q0 * q_step;
      for (int d = last - 1; d >= 0 && batch > 0; --d) {
        if (d == unit) continue;
        const std::int64_t index = batch % layout.sizes[d];
        batch /= layout.sizes[d];
        out_offset += index * out_strides[d];
        x_offset += index * x_strides[d];
      }
      const std::int64_t p_count = std::min(kTransposeTile, P - p0);
      const std::int64_t q_count = std::min(kTransposeTile, Q - q0);
      for (std::int64_t p = 0; p < p_count; ++p) {
        T* o = out + out_offset + p * out_strides[unit];
        const T* source = x + x_offset + p;
        for (std::int64_t q = 0; q < q_count; ++q) o[q] = source[q * q_step];
      }
    }
  });
}

}  // namespace

void strided_copy(void* out, const void* x, const std::vector<std::int64_t>& sizes,
                  const std::vector<std::int64_t>& strides, std::size_t element_size) {
  const BroadcastLayout layout = coalesce(sizes, strides);
  if (layout.numel() == 0) return;
  const int dims = static_cast<int>(layout.sizes.size());
  const std::int64_t last_step = layout.strides[0][dims - 1];
  int unit = -1;
  if (last_step != 0 && last_step != 1)
    for (int d = 0; d < dims - 1; ++d)
      if (layout.strides[0][d] == 1 && layout.sizes[d] > 1) unit = d;
  with_element_type(element_size, [&](auto type) {
    using T = decltype(type);
    if (unit >= 0) copy_transposed(static_cast<T*>(out), static_cast<const T*>(x), layout, unit);
    else copy_by_rows(static_cast<T*>(out), static_cast<const T*>(x), layout);
  });
}

void copy_rows(void* out, std::int64_t out_stride, const void* x, std::int64_t x_stride, std::int64_t rows,
               std::int64_t row_bytes) {
  if (rows == 0 || row_bytes == 0) return;
  char* destination = static_cast<char*>(out);
  const char* source = static_cast<const char*>(x);
  // Whole rows per unit, or byte blocks of one row when a row is long.
  const std::int64_t block = std::min(row_bytes, kUnitBytes);
  const std::int64_t blocks_per_row = ceil_div(row_bytes, block);
  const std::int64_t rows_per_unit = blocks_per_row == 1 ? std::max<std::int64_t>(1, kUnitBytes / row_bytes) : 1;
  const std::int64_t units = ceil_div(rows, rows_per_unit) * blocks_per_row;
  parallel_for(units, 1, [&](std::int64_t u0, std::int64_t u1) {
    for (std::int64_t u = u0; u < u1; ++u) {
      const std::int64_t begin = (u % blocks_per_row) * block;
      const std::int64_t bytes = std::min(block, row_bytes - begin);
      const std::int64_t r0 = (u / blocks_per_row) * rows_per_unit;
      const std::int64_t r1 = std::min(rows, r0 + rows_per_unit);
      for (std::int64_t r = r0; r < r1; ++r)
        std::memcpy(destination + r * out_stride + begin, source + r * x_stride + begin,
                    static_cast<std::size_t>(bytes));
    }
  });
}

template <typename Index>
void index_select(void* out, const void* x, const Index* index, std::int64_t outer, std::int64_t size,
                  std::int64_t count, std::int64_t inner, std::size_t element_size) {
  const std::int64_t row_bytes = inner * static_cast<std::int64_t>(element_size);
  if (row_bytes == 0) return;
  char* destination = static_cast<char*>(out);
  const char* source = static_cast<const char*>(x);
  parallel_for(outer * count, std::max<std::int64_t>(1, kUnitBytes / row_bytes), [&](std::int64_t u0, std::int64_t u1) {
    for (std::int64_t u = u0; u < u1; ++u) {
      const std::int64_t o = u / count, j = u % count;
      std::memcpy(destination + u * row_bytes, source + (o * size + static_cast<std::int64_t>(index[j])) * row_bytes,
                  static_cast<std::size_t>(row_bytes));
    }
  });
}

template <typename Index>
void index_select_backward(float* dx, const float* dy, const Index* index, std::int64_t outer, std::int64_t size,
                           std::int64_t count, std::int64_t inner) {
  fill(dx, 0.0f, outer * size * inner);
  for_each_column_block(outer, inner, count, [&](std::int64_t o, std::int64_t c0, std::int64_t c1) {
    for (std::int64_t j = 0; j < count; ++j) {
      float* target = dx + (o * size + static_cast<std::int64_t>(index[j])) * inner;
      const float* source = dy + (o * count + j) * inner;
      for (std::int64_t c = c0; c < c1; ++c) target[c] += source[c];
    }
  });
}

template <typename Index>
void gather(void* out, const void* x, const Index* index, const std::vector<std::int64_t>& outer_offsets,
            std::int64_t count, const std::vector<std::int64_t>& inner_offsets, std::int64_t dim_stride,
            std::size_t element_size) {
  const std::int64_t outer = static_cast<std::int64_t>(outer_offsets.size());
  const std::int64_t inner = static_cast<std::int64_t>(inner_offsets.size());
  if (inner == 0) return;
  with_element_type(element_size, [&](auto type) {
    using T = decltype(type);
    T* destination = static_cast<T*>(out);
    const T* source = static_cast<const T*>(x);
    parallel_for(outer * count, std::max<std::int64_t>(1, kUnitElements / inner),
                 [&](std::int64_t u0, std::int64_t u1) {
                   for (std::int64_t u = u0; u < u1; ++u) {
                     const T* slab = source + outer_offsets[u / count];
                     const Index* ids = index + u * inner;
                     T* row = destination + u * inner;
                     for (std::int64_t t = 0; t < inner; ++t)
                       row[t] = slab[static_cast<std::int64_t>(ids[t]) * dim_stride + inner_offsets[t]];
                   }
                 });
  });
}

template <typename Index>
void gather_backward(float* dx, std::int64_t dx_numel, const float* dy, const Index* index,
                     const std::vector<std::int64_t>& outer_offsets, std::int64_t count,
                     const std::vector<std::int64_t>& inner_offsets, std::int64_t dim_stride) {
  fill(dx, 0.0f, dx_numel);
  const std::int64_t outer = static_cast<std::int64_t>(outer_offsets.size());
  const std::int64_t inner = static_cast<std::int64_t>(inner_offsets.size());
  // Distinct (o, t) never read the same element of x, so the unit owning
  // columns t of slab o adds into elements no other unit touches.
  for_each_column_block(outer, inner, count, [&](std::int64_t o, std::int64_t t0, std::int64_t t1) {
    float* slab = dx + outer_offsets[o];
    for (std::int64_t j = 0; j < count; ++j) {
      const std::int64_t row = (o * count + j) * inner;
      for (std::int64_t t = t0; t < t1; ++t)
        slab[static_cast<std::int64_t>(index[row + t]) * dim_stride + inner_offsets[t]] += dy[row + t];
    }
  });
}

#define ATTNKIT_INSTANTIATE_INDEXED(Index)                                                                      \
  template void index_select<Index>(void*, const void*, const Index*, std::int64_t, std::int64_t, std::int64_t, \
                                    std::int64_t, std::size_t);                                                 \
  template void index_select_backward<Index>(float*, const float*, const Index*, std::int64_t, std::int64_t,    \
                                             std::int64_t, std::int64_t);                                       \
  template void gather<Index>(void*, const void*, const Index*, const std::vector<std::int64_t>&, std::int64_t, \
                              const std::vector<std::int64_t>&, std::int64_t, std::size_t);                     \
  template void gather_backward<Index>(float*, std::int64_t, const float*, const Index*,                        \
                                       const std::vector<std::int64_t>&, std::int64_t,                          \
                                       const std::vector<std::int64_t>&, std::int64_t);
ATTNKIT_INSTANTIATE_INDEXED(std::int32_t)
ATTNKIT_INSTANTIATE_INDEXED(std::int64_t)
#undef ATTNKIT_INSTANTIATE_INDEXED

}  // namespace attnkit::cpu
