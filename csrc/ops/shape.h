// Data-movement ops: the checked, public C++ entry points. Arrays are
// contiguous and row-major, so anything that is not a leading-dimension slice
// or a reshape copies into a new array. The copies serve every dtype; the
// gradients (the *_backward entry points) are float32.
#pragma once

#include <cstdint>
#include <vector>

#include "core/array.h"

namespace attnkit::ops {

// out.shape[i] = x.shape[dims[i]]: a new contiguous array. dims is a
// permutation of [0, ndim) (negative entries count from the end).
Array permute(const Array& x, const std::vector<std::int64_t>& dims);
// x broadcast to `shape` (numpy rules: right-aligned, sizes equal or 1), copied.
Array expand(const Array& x, const Shape& shape);

// Pieces of x along dim with the given sizes (non-negative, summing to
// x.shape[dim]). Views of x when every dimension before dim has size 1 (the
// pieces are then contiguous runs of x's memory), copies otherwise.
std::vector<Array> split(const Array& x, const std::vector<std::int64_t>& sizes, std::int64_t dim);
// The arrays joined along dim: same dtype, same ndim, equal sizes elsewhere.
Array cat(const std::vector<Array>& arrays, std::int64_t dim);

// x[..., start : start + length, ...] along dim (0 <= start, start + length
// <= size): a view when every dimension before dim has size 1, else a copy.
Array narrow(const Array& x, std::int64_t dim, std::int64_t start, std::int64_t length);
// The gradient of narrow: zeros of input_shape with grad_output placed at
// [start, start + grad_output.shape[dim]) along dim.
Array narrow_backward(const Array& grad_output, const Shape& input_shape, std::int64_t dim, std::int64_t start);

// out = x with dimension dim indexed by `index` (int32 or int64, 0-d or 1-d,
// every entry in [0, x.shape[dim]); ValueError naming the first bad one):
// out.shape[dim] = index.numel().
Array index_select(const Array& x, std::int64_t dim, const Array& index);
// The gradient: zeros of input_shape, grad_output's slices added back to the
// rows index names, each row's additions in index order (deterministic).
Array index_select_backward(const Array& grad_output, const Shape& input_shape, std::int64_t dim, const Array& index);

// out[i][j][k] = x[i][index[i][j][k]][k] for dim = 1, and likewise for any
// dim: index (int32 or int64) has x's ndim, sizes at most x's outside dim, and
// entries in [0, x.shape[dim]); out has index's shape.
Array gather(const Array& x, std::int64_t dim, const Array& index);
// The gradient: zeros of input_shape with every grad_output element added
// where its value was read, in index order (deterministic).
Array gather_backward(const Array& grad_output, const Shape& input_shape, std::int64_t dim, const Array& index);

}  // namespace attnkit::ops
