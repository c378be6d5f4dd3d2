// Elementwise ops: the checked, public C++ entry points. Arithmetic,
// comparisons and where broadcast their operands as numpy does (shapes
// right-aligned, sizes equal or 1); every output is a new contiguous array.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/array.h"
#include "cpu/elementwise.h"

namespace attnkit::ops {

// "add", "sub", "mul", "div"; ValueError otherwise.
cpu::BinaryOp parse_binary_op(const std::string& name);
// "eq", "ne", "lt", "le", "gt", "ge"; ValueError otherwise.
cpu::CompareOp parse_compare_op(const std::string& name);

// The shape both broadcast to; ValueError naming op, both shapes otherwise.
Shape broadcast_shapes(const char* op, const char* a_name, const Shape& a, const char* b_name, const Shape& b);

// ---------------------------------------------------------------- arithmetic --
// out = a op b; a and b float32, broadcast against each other.
Array binary(const Array& a, const Array& b, cpu::BinaryOp op);
// out = a op scalar, or scalar op a with scalar_first; a float32. The scalar
// is rounded to float32 first, as PyTorch and numpy do for a Python number.
Array binary_scalar(const Array& a, double scalar, bool scalar_first, cpu::BinaryOp op);
// out = -a (the sign bit flipped, NaN and zeros included).
Array negative(const Array& a);
// target += source, in place: the gradient accumulation. Both float32, one shape.
void add_in_place(const Array& target, const Array& source);

// The gradients of out = a op b (op mul or div) with respect to a and b,
// given grad_output (the broadcast shape). Each is summed over the
// dimensions its operand was broadcast along (sum_to_shape), so it has the
// operand's shape; an undefined Array where not needed:
//   mul: (g b, g a)   div: (g / b, -((g / b) a) / b)
// add and sub need no operand: their gradients are sum_to_shape(g) and its
// negative, so they are not taken here (saving a and b would keep them alive).
std::pair<Array, Array> binary_backward(const Array& grad_output, const Array& a, const Array& b, cpu::BinaryOp op,
                                        bool need_a, bool need_b);
// The gradient of out = scalar / a with respect to a: -((g / a) scalar) / a.
// (The other scalar ops' gradients are g, -g, g * scalar and g / scalar.)
Array scalar_divide_backward(const Array& grad_output, const Array& a, double scalar);

// ---------------------------------------------------------------- reductions --
// The sum over `dims` (negative dims count from the end; each at most once;
// empty sums nothing and copies), keeping them as size 1 with keepdim. float32
// gives float32, pairwise and bitwise the same for any thread count; bool,
// int32 and int64 give an exact int64 sum.
Array sum(const Array& x, const std::vector<std::int64_t>& dims, bool keepdim);
// sum / (the number of elements summed); float32 only. An empty reduction is NaN.
Array mean(const Array& x, const std::vector<std::int64_t>& dims, bool keepdim);
// x summed over the dimensions along which `shape` broadcasts to x's shape
// (leading ones and size-1 ones), giving `shape`: the gradient of a broadcast.
// Returns x itself when the shapes are equal. float32.
Array sum_to_shape(const Array& x, const Shape& shape);

// (values, indices): the max over the last dimension and the first index
// where it occurs (int64); NaN is larger than every number. x float32 with a
// non-empty last dimension; both outputs have x's shape without it.
std::pair<Array, Array> max_last_dim(const Array& x);

// ------------------------------------------------------ comparisons, where --
// out = a op b as bool; a and b of one dtype (float32, int32, int64 or bool).
Array compare(const Array& a, const Array& b, cpu::CompareOp op);
// out = condition ? a : b; condition bool; a and b of one dtype; all three
// broadcast together.
Array where(const Array& condition, const Array& a, const Array& b);
// The gradients of where(condition, a, b) given grad_output (the broadcast
// shape): (grad_output where condition else 0, 0 where condition else
// grad_output), each summed back to a_shape and b_shape; undefined where not needed.
std::pair<Array, Array> where_backward(const Array& grad_output, const Array& condition, const Shape& a_shape,
                                       const Shape& b_shape, bool need_a, bool need_b);
// out = value where mask else x; mask bool, broadcastable to x's shape (the
// output keeps x's shape). value is converted to x's dtype.
Array masked_fill(const Array& x, const Array& mask, double value);

// --------------------------------------------------- casts, fills, ranges --
// x converted to dtype (float32, int32, int64, bool; see cpu::cast for the
// float -> integer rule), or between float32 and bfloat16 (exact: nearest,
// ties to even, NaN kept; cpu/convert.h). Always a new array.
Array cast(const Array& x, DType dtype);
// Sets every element to value (converted to the array's dtype), in place.
void fill(const Array& x, double value);
void fill_integer(const Array& x, std::int64_t value);
// [start, start + step, ...), count elements: float32 computed in double,
// or int32/int64 exactly.
Array arange(double start, double step, std::int64_t count);
Array arange_integer(std::int64_t start, std::int64_t step, std::int64_t count, DType dtype);

}  // namespace attnkit::ops
