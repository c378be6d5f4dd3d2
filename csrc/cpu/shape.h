// CPU data-movement kernels: strided copies (permute, transpose, broadcast),
// blocks of rows (split, cat, narrow), and indexed copies (index_select,
// gather) with their deterministic scatter-add gradients. The copies move
// elements of 1, 2, 4 or 8 bytes and never compute with them, so they serve
// every dtype; the scatter-adds are float32.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace attnkit::cpu {

// out, contiguous with shape `sizes`, gets out[i_0, ..., i_n] =
// x[i_0 * strides[0] + ... + i_n * strides[n]]; strides in elements, 0 along
// a broadcast dimension. The 2-d transpose pattern (x contiguous along some
// dimension other than out's last) is copied in cache-sized tiles, so both
// sides are read and written a cache line at a time.
void strided_copy(void* out, const void* x, const std::vector<std::int64_t>& sizes,
                  const std::vector<std::int64_t>& strides, std::size_t element_size);

// For r < rows: row_bytes bytes from x + r * x_stride to out + r * out_stride
// (strides in bytes). The rows must not overlap.
void copy_rows(void* out, std::int64_t out_stride, const void* x, std::int64_t x_stride, std::int64_t rows,
               std::int64_t row_bytes);

// out[o, j, :] = x[o, index[j], :] for o < outer, j < count; x [outer, size,
// inner], out [outer, count, inner]; every index in [0, size) (checked by the
// caller).
template <typename Index>
void index_select(void* out, const void* x, const Index* index, std::int64_t outer, std::int64_t size,
                  std::int64_t count, std::int64_t inner, std::size_t element_size);
// dx [outer, size, inner] = 0, then dx[o, index[j], :] += dy[o, j, :] in
// increasing j: each element of dx is summed by one thread, in one order, so
// the result is bitwise the same for any thread count.
template <typename Index>
void index_select_backward(float* dx, const float* dy, const Index* index, std::int64_t outer, std::int64_t size,
                           std::int64_t count, std::int64_t inner);

// Gather along one dimension of x. The index array is [outer, count, inner]
// (its dimensions before, at and after `dim`); its element (o, j, t) reads
//   x[outer_offsets[o] + index[o, j, t] * dim_stride + inner_offsets[t]],
// where the offsets place the index's coordinates in x, whose dimensions may
// be larger. Every index in [0, x.size(dim)) (checked by the caller).
template <typename Index>
void gather(void* out, const void* x, const Index* index, const std::vector<std::int64_t>& outer_offsets,
            std::int64_t count, const std::vector<std::int64_t>& inner_offsets, std::int64_t dim_stride,
            std::size_t element_size);
// dx (x's shape, `dx_numel` elements) = 0, then every gathered element's
// gradient is added back to where it was read from, in increasing j for each
// (o, t): deterministic as above.
template <typename Index>
void gather_backward(float* dx, std::int64_t dx_numel, const float* dy, const Index* index,
                     const std::vector<std::int64_t>& outer_offsets, std::int64_t count,
                     const std::vector<std::int64_t>& inner_offsets, std::int64_t dim_stride);

}  // namespace attnkit::cpu
