#include "ops/shape.h"

#include <string>

#include "core/errors.h"
#include "cpu/elementwise.h"
#include "cpu/shape.h"
#include "ops/checks.h"

namespace attnkit::ops {
namespace {

void check_defined_cpu(const char* op, const char* argument, const Array& a) {
  check_defined(op, argument, a);
  check_cpu(op, argument, a);
}

void check_float32_cpu(const char* op, const char* argument, const Array& a) {
  check_dtype(op, argument, a, DType::float32);
  check_cpu(op, argument, a);
}

// dim in [-ndim, ndim), counted from the end when negative.
std::int64_t normalize_dim(const char* op, std::int64_t dim, int ndim) {
  if (ndim == 0) throw_value_error(op, "input", "an array with at least one dimension", "a 0-d array");
  if (dim < -ndim || dim >= ndim)
    throw_value_error(op, "dim", "a dim in [" + std::to_string(-ndim) + ", " + std::to_string(ndim) + ")",
                      std::to_string(dim));
  return dim < 0 ? dim + ndim : dim;
}

// The part of x from `start` along dim, `length` long, as a view: valid when
// every dimension before dim has size 1 (so the part is one contiguous run).
Array view_along(const Array& x, std::int64_t dim, std::int64_t start, std::int64_t length) {
  Shape shape = x.shape();
  shape[dim] = length;
  const std::int64_t inner = shape_numel(x.shape(), dim + 1, x.shape().size());
  const std::size_t offset = static_cast<std::size_t>(start * inner) * x.itemsize();
  return Array(x.storage(), x.byte_offset() + offset, shape, x.dtype());
}

// Copies x[..., start : start + length, ...] along dim into a new array.
Array copy_along(const Array& x, std::int64_t dim, std::int64_t start, std::int64_t length) {
  Shape shape = x.shape();
  shape[dim] = length;
  Array out = Array::empty(shape, x.dtype());
  // Nothing to copy; the sizes around dim may not even multiply within int64.
  if (out.numel() == 0) return out;
  const std::int64_t outer = shape_numel(x.shape(), 0, dim);
  const std::int64_t inner_bytes =
      shape_numel(x.shape(), dim + 1, x.shape().size()) * static_cast<std::int64_t>(x.itemsize());
  cpu::copy_rows(out.raw_data(), length * inner_bytes, static_cast<const char*>(x.raw_data()) + start * inner_bytes,
                 x.shape()[dim] * inner_bytes, outer, length * inner_bytes);
  return out;
}

void check_index_dtype(const char* op, const Array& index) {
  check_defined_cpu(op, "index", index);
  if (index.dtype() != DType::int32 && index.dtype() != DType::int64)
    throw_type_error(op, "index", "int32 or int64 indices", dtype_name(index.dtype()));
}

// Every index must name an element: the kernels read (forward) or write
// (backward) there without further checks.
template <typename Index>
void check_in_range(const char* op, const Index* ids, std::int64_t n, std::int64_t size, std::int64_t dim) {
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t id = static_cast<std::int64_t>(ids[i]);
    if (id < 0 || id >= size)
      throw_value_error(
          op, "index",
          "indices in [0, " + std::to_string(size) + ") (the size of dimension " + std::to_string(dim) + ")",
          "index " + std::to_string(id) + " at flat position " + std::to_string(i));
  }
}

void check_indices(const char* op, const Array& index, std::int64_t size, std::int64_t dim) {
  if (index.dtype() == DType::int64) check_in_range(op, index.data<std::int64_t>(), index.numel(), size, dim);
  else check_in_range(op, index.data<std::int32_t>(), index.numel(), size, dim);
}

// ------------------------------------------------------------ index_select --

void check_index_select(const char* op, const Shape& input_shape, std::int64_t dim, const Array& index) {
  check_index_dtype(op, index);
  if (index.ndim() > 1)
    throw_value_error(op, "index", "a 0-d or 1-d array of indices", "shape " + shape_string(index.shape()));
  check_indices(op, index, input_shape[dim], dim);
}

Shape index_select_shape(const Shape& input_shape, std::int64_t dim, const Array& index) {
  Shape shape = input_shape;
  shape[dim] = index.numel();
  return shape;
}

// ------------------------------------------------------------------ gather --

// The kernels' view of a gather: where index's leading and trailing
// coordinates (around dim) lie in an array of x_shape.
struct GatherOffsets {
  std::vector<std::int64_t> outer;
  std::vector<std::int64_t> inner;
  std::int64_t count = 0;
  std::int64_t dim_stride = 0;
};

GatherOffsets gather_offsets(const Shape& x_shape, std::int64_t dim, const Shape& index_shape) {
  const std::vector<std::int64_t> strides = contiguous_strides(x_shape);
  GatherOffsets offsets;
  offsets.count = index_shape[dim];
  offsets.dim_stride = strides[dim];
  // Each list holds, for every coordinate tuple of its dimensions in
  // row-major order, the element offset that tuple has in x.
  auto place = [&](std::size_t begin, std::size_t end) {
    std::vector<std::int64_t> list(1, 0);
    for (std::size_t d = begin; d < end; ++d) {
      std::vector<std::int64_t> grown;
      grown.reserve(list.size() * static_cast<std::size_t>(index_shape[d]));
      for (std::int64_t base : list)
        for (std::int64_t i = 0; i < index_shape[d]; ++i) grown.push_back(base + i * strides[d]);
      list.swap(grown);
    }
    return list;
  };
  offsets.outer = place(0, dim);
  offsets.inner = place(dim + 1, index_shape.size());
  return offsets;
}

void check_gather(const char* op, const Shape& input_shape, std::int64_t dim, const Array& index) {
  check_index_dtype(op, index);
  if (index.ndim() != static_cast<int>(input_shape.size()))
    throw_value_error(op, "index", "as many dimensions as the input, " + std::to_string(input_shape.size()),
                      "shape " + shape_string(index.shape()));
  for (std::size_t d = 0; d < input_shape.size(); ++d)
    if (static_cast<std::int64_t>(d) != dim && index.shape()[d] > input_shape[d])
      throw_value_error(
          op, "index", "sizes at most the input's " + shape_string(input_shape) + " outside dim " + std::to_string(dim),
          "shape " + shape_string(index.shape()));
  check_indices(op, index, input_shape[dim], dim);
}

}  // namespace

Array permute(const Array& x, const std::vector<std::int64_t>& dims) {
  check_defined_cpu("permute", "input", x);
  const int n = x.ndim();
  if (static_cast<int>(dims.size()) != n)
    throw_value_error("permute", "dims", "a permutation of the input's " + std::to_string(n) + " dims",
                      std::to_string(dims.size()) + " dims");
  const std::vector<std::int64_t> strides = contiguous_strides(x.shape());
  std::vector<bool> seen(static_cast<std::size_t>(n), false);
  Shape shape(static_cast<std::size_t>(n));
  std::vector<std::int64_t> source_strides(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    const std::int64_t d = normalize_dim("permute", dims[i], n);
    if (seen[d])
      throw_value_error("permute", "dims", "each dim exactly once", "dim " + std::to_string(dims[i]) + " twice");
    seen[d] = true;
    shape[i] = x.shape()[d];
    source_strides[i] = strides[d];
  }
  Array out = Array::empty(shape, x.dtype());
  cpu::strided_copy(out.raw_data(), x.raw_data(), shape, source_strides, x.itemsize());
  return out;
}

Array expand(const Array& x, const Shape& shape) {
  check_defined_cpu("expand", "input", x);
  const int n = static_cast<int>(shape.size());
  const int lead = n - x.ndim();
  bool fits = lead >= 0;
  for (int d = 0; d < x.ndim() && fits; ++d) fits = x.shape()[d] == shape[d + lead] || x.shape()[d] == 1;
  for (std::int64_t size : shape) fits = fits && size >= 0;
  if (!fits)
    throw_value_error("expand", "shape", "a shape the input's " + shape_string(x.shape()) + " broadcasts to",
                      shape_string(shape));
  const std::vector<std::int64_t> strides = contiguous_strides(x.shape());
  std::vector<std::int64_t> source_strides(static_cast<std::size_t>(n), 0);
  for (int d = 0; d < x.ndim(); ++d)
    if (x.shape()[d] != 1) source_strides[d + lead] = strides[d];
  Array out = Array::empty(shape, x.dtype());
  cpu::strided_copy(out.raw_data(), x.raw_data(), shape, source_strides, x.itemsize());
  return out;
}

std::vector<Array> split(const Array& x, const std::vector<std::int64_t>& sizes, std::int64_t dim) {
  check_defined_cpu("split", "input", x);
  const std::int64_t d = normalize_dim("split", dim, x.ndim());
  std::int64_t total = 0;
  for (std::int64_t size : sizes) {
    if (size < 0) throw_value_error("split", "split_size_or_sections", "sizes >= 0", std::to_string(size));
    total = checked_add(total, size, "split", "split_size_or_sections");
  }
  if (total != x.shape()[d])
    throw_value_error(
        "split", "split_size_or_sections",
        "sizes summing to " + std::to_string(x.shape()[d]) + " (the size of dim " + std::to_string(dim) + ")",
        "sizes summing to " + std::to_string(total));
  const bool contiguous_pieces = shape_numel(x.shape(), 0, d) == 1;
  std::vector<Array> pieces;
  pieces.reserve(sizes.size());
  std::int64_t start = 0;
  for (std::int64_t size : sizes) {
    pieces.push_back(contiguous_pieces ? view_along(x, d, start, size) : copy_along(x, d, start, size));
    start += size;
  }
  return pieces;
}

Array cat(const std::vector<Array>& arrays, std::int64_t dim) {
  if (arrays.empty()) throw_value_error("cat", "tensors", "at least one array", "an empty list");
  const Array& first = arrays[0];
  check_defined_cpu("cat", "tensors[0]", first);
  const std::int64_t d = normalize_dim("cat", dim, first.ndim());
  Shape shape = first.shape();
  shape[d] = 0;
  for (std::size_t i = 0; i < arrays.size(); ++i) {
    const std::string argument = "tensors[" + std::to_string(i) + "]";
    const Array& a = arrays[i];
    check_defined_cpu("cat", argument.c_str(), a);
    if (a.dtype() != first.dtype())
      throw_type_error("cat", argument, std::string("the dtype of tensors[0], ") + dtype_name(first.dtype()),
                       dtype_name(a.dtype()));
    bool matches = a.ndim() == first.ndim();
    for (int k = 0; k < first.ndim() && matches; ++k) matches = k == d || a.shape()[k] == first.shape()[k];
    if (!matches)
      throw_value_error(
          "cat", argument,
          "the shape of tensors[0], " + shape_string(first.shape()) + ", except along dim " + std::to_string(dim),
          shape_string(a.shape()));
    shape[d] = checked_add(shape[d], a.shape()[d], "cat", "tensors");
  }
  Array out = Array::empty(shape, first.dtype());
  if (out.numel() == 0) return out;  // as in copy_along
  const std::int64_t outer = shape_numel(shape, 0, d);
  const std::int64_t inner_bytes =
      shape_numel(shape, d + 1, shape.size()) * static_cast<std::int64_t>(first.itemsize());
  std::int64_t start = 0;
  for (const Array& a : arrays) {
    const std::int64_t size = a.shape()[d];
    cpu::copy_rows(static_cast<char*>(out.raw_data()) + start * inner_bytes, shape[d] * inner_bytes, a.raw_data(),
                   size * inner_bytes, outer, size * inner_bytes);
    start += size;
  }
  return out;
}

Array narrow(const Array& x, std::int64_t dim, std::int64_t start, std::int64_t length) {
  check_defined_cpu("narrow", "input", x);
  const std::int64_t d = normalize_dim("narrow", dim, x.ndim());
  const std::int64_t size = x.shape()[d];
  if (start < 0 || start > size)
    throw_value_error("narrow", "start", "a start in [0, " + std::to_string(size) + "]", std::to_string(start));
  if (length < 0 || length > size - start)
    throw_value_error("narrow", "length",
                      "a length in [0, " + std::to_string(size - start) + "] from start " + std::to_string(start),
                      std::to_string(length));
  return shape_numel(x.shape(), 0, d) == 1 ? view_along(x, d, start, length) : copy_along(x, d, start, length);
}

Array narrow_backward(const Array& grad_output, const Shape& input_shape, std::int64_t dim, std::int64_t start) {
  check_float32_cpu("narrow_backward", "grad_output", grad_output);
  const std::int64_t d = normalize_dim("narrow_backward", dim, static_cast<int>(input_shape.size()));
  Shape expected = input_shape;
  expected[d] = grad_output.ndim() == static_cast<int>(input_shape.size()) ? grad_output.shape()[d] : -1;
  if (grad_output.shape() != expected || start < 0 || start > input_shape[d] || expected[d] > input_shape[d] - start)
    throw_value_error("narrow_backward", "grad_output",
                      "the input's shape " + shape_string(input_shape) + " with at most " +
                          std::to_string(input_shape[d] - start) + " along dim " + std::to_string(dim) +
                          " from start " + std::to_string(start),
                      shape_string(grad_output.shape()));
  Array grad = Array::empty(input_shape, DType::float32);
  if (grad.numel() == 0) return grad;  // as in copy_along
  cpu::fill(grad.data<float>(), 0.0f, grad.numel());
  const std::int64_t outer = shape_numel(input_shape, 0, d);
  const std::int64_t inner_bytes = shape_numel(input_shape, d + 1, input_shape.size()) * 4;
  const std::int64_t length = expected[d];
  cpu::copy_rows(static_cast<char*>(grad.raw_data()) + start * inner_bytes, input_shape[d] * inner_bytes,
                 grad_output.raw_data(), length * inner_bytes, outer, length * inner_bytes);
  return grad;
}

Array index_select(const Array& x, std::int64_t dim, const Array& index) {
  check_defined_cpu("index_select", "input", x);
  const std::int64_t d = normalize_dim("index_select", dim, x.ndim());
  check_index_select("index_select", x.shape(), d, index);
  Array out = Array::empty(index_select_shape(x.shape(), d, index), x.dtype());
  const std::int64_t outer = shape_numel(x.shape(), 0, d);
  const std::int64_t inner = shape_numel(x.shape(), d + 1, x.shape().size());
  if (index.dtype() == DType::int64)
    cpu::index_select(out.raw_data(), x.raw_data(), index.data<std::int64_t>(), outer, x.shape()[d], index.numel(),
                      inner, x.itemsize());
  else
    cpu::index_select(out.raw_data(), x.raw_data(), index.data<std::int32_t>(), outer, x.shape()[d], index.numel(),
                      inner, x.itemsize());
  return out;
}

Array index_select_backward(const Array& grad_output, const Shape& input_shape, std::int64_t dim, const Array& index) {
  check_float32_cpu("index_select_backward", "grad_output", grad_output);
  const std::int64_t d = normalize_dim("index_select_backward", dim, static_cast<int>(input_shape.size()));
  check_index_select("index_select_backward", input_shape, d, index);
  const Shape expected = index_select_shape(input_shape, d, index);
  if (grad_output.shape() != expected)
    throw_value_error("index_select_backward", "grad_output", "shape " + shape_string(expected),
                      shape_string(grad_output.shape()));
  Array grad = Array::empty(input_shape, DType::float32);
  const std::int64_t outer = shape_numel(input_shape, 0, d);
  const std::int64_t inner = shape_numel(input_shape, d + 1, input_shape.size());
  if (index.dtype() == DType::int64)
    cpu::index_select_backward(grad.data<float>(), grad_output.data<float>(), index.data<std::int64_t>(), outer,
                               input_shape[d], index.numel(), inner);
  else
    cpu::index_select_backward(grad.data<float>(), grad_output.data<float>(), index.data<std::int32_t>(), outer,
                               input_shape[d], index.numel(), inner);
  return grad;
}

Array gather(const Array& x, std::int64_t dim, const Array& index) {
  check_defined_cpu("gather", "input", x);
  const std::int64_t d = normalize_dim("gather", dim, x.ndim());
  check_gather("gather", x.shape(), d, index);
  Array out = Array::empty(index.shape(), x.dtype());
  const GatherOffsets offsets = gather_offsets(x.shape(), d, index.shape());
  if (index.dtype() == DType::int64)
    cpu::gather(out.raw_data(), x.raw_data(), index.data<std::int64_t>(), offsets.outer, offsets.count, offsets.inner,
                offsets.dim_stride, x.itemsize());
  else
    cpu::gather(out.raw_data(), x.raw_data(), index.data<std::int32_t>(), offsets.outer, offsets.count, offsets.inner,
                offsets.dim_stride, x.itemsize());
  return out;
}

Array gather_backward(const Array& grad_output, const Shape& input_shape, std::int64_t dim, const Array& index) {
  check_float32_cpu("gather_backward", "grad_output", grad_output);
  const std::int64_t d = normalize_dim("gather_backward", dim, static_cast<int>(input_shape.size()));
  check_gather("gather_backward", input_shape, d, index);
  check_same_shape("gather_backward", "grad_output", grad_output, "index", index);
  Array grad = Array::empty(input_shape, DType::float32);
  const GatherOffsets offsets = gather_offsets(input_shape, d, index.shape());
  if (index.dtype() == DType::int64)
    cpu::gather_backward(grad.data<float>(), grad.numel(), grad_output.data<float>(), index.data<std::int64_t>(),
                         offsets.outer, offsets.count, offsets.inner, offsets.dim_stride);
  else
    cpu::gather_backward(grad.data<float>(), grad.numel(), grad_output.data<float>(), index.data<std::int32_t>(),
                         offsets.outer, offsets.count, offsets.inner, offsets.dim_stride);
  return grad;
}

}  // namespace attnkit::ops
