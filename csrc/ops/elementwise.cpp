#include "ops/elementwise.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/errors.h"
#include "cpu/convert.h"
#include "ops/checks.h"

namespace attnkit::ops {

namespace {

const char* binary_op_name(cpu::BinaryOp op) {
  switch (op) {
    case cpu::BinaryOp::add: return "add";
    case cpu::BinaryOp::subtract: return "sub";
    case cpu::BinaryOp::multiply: return "mul";
    case cpu::BinaryOp::divide: return "div";
  }
  return "binary";
}

const char* compare_op_name(cpu::CompareOp op) {
  switch (op) {
    case cpu::CompareOp::equal: return "eq";
    case cpu::CompareOp::not_equal: return "ne";
    case cpu::CompareOp::less: return "lt";
    case cpu::CompareOp::less_equal: return "le";
    case cpu::CompareOp::greater: return "gt";
    case cpu::CompareOp::greater_equal: return "ge";
  }
  return "compare";
}

void check_float32_cpu(const char* op, const char* argument, const Array& a) {
  check_dtype(op, argument, a, DType::float32);
  check_cpu(op, argument, a);
}

void check_defined_cpu(const char* op, const char* argument, const Array& a) {
  check_defined(op, argument, a);
  check_cpu(op, argument, a);
}

// The dtypes the comparison, cast and fill kernels are built for.
bool is_basic_dtype(DType dtype) {
  return dtype == DType::float32 || dtype == DType::int32 || dtype == DType::int64 || dtype == DType::bool_;
}

void check_basic_dtype(const char* op, const char* argument, DType dtype) {
  if (!is_basic_dtype(dtype)) throw_type_error(op, argument, "float32, int32, int64 or bool", dtype_received(dtype));
}

// Writes a op b into out, which has the broadcast shape of a and b (checked
// by the caller). out may be a or b when that operand is not broadcast.
void binary_into(const Array& out, const Array& a, const Array& b, cpu::BinaryOp op) {
  const cpu::BroadcastLayout layout = cpu::broadcast_layout(out.shape(), {a.shape(), b.shape()});
  cpu::binary(out.data<float>(), a.data<float>(), b.data<float>(), layout, op);
}

void negate_in_place(const Array& a) {
  cpu::binary_scalar(a.data<float>(), a.data<float>(), -1.0f, a.numel(), false, cpu::BinaryOp::multiply);
}

// ------------------------------------------------------------ reductions --

// One dimension of x as the reduction sees it: neighbours of the same kind
// are merged, size-1 dimensions dropped.
struct Group {
  std::int64_t size;
  bool reduced;
};

std::vector<Group> group_dimensions(const Shape& shape, const std::vector<bool>& reduce) {
  std::vector<Group> groups;
  for (std::size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (!groups.empty() && groups.back().reduced == reduce[d]) groups.back().size *= shape[d];
    else groups.push_back({shape[d], reduce[d]});
  }
  return groups;
}

template <typename T>
void sum_pass(const Array& out, const Array& x, std::int64_t outer, std::int64_t reduced, std::int64_t inner) {
  if constexpr (std::is_same_v<T, float>) cpu::sum(out.data<float>(), x.data<float>(), outer, reduced, inner);
  else cpu::sum_integer(out.data<std::int64_t>(), x.data<T>(), outer, reduced, inner);
}

// Sums x over the dimensions marked in `reduce`, one merged group at a time,
// the innermost first (each pass is a [outer, reduced, inner] reduction).
// Returns a new contiguous array of output dtype `out_dtype` holding
// prod(kept sizes) elements (the caller gives it its shape).
template <typename T>
Array reduce_marked(const Array& x, const std::vector<bool>& reduce, DType out_dtype) {
  std::vector<Group> groups = group_dimensions(x.shape(), reduce);
  Array current = x;
  bool reduced_any = false;
  while (true) {
    int last = -1;
    for (int g = 0; g < static_cast<int>(groups.size()); ++g)
      if (groups[g].reduced) last = g;
    if (last < 0) break;
    std::int64_t outer = 1, inner = 1;
    for (int g = 0; g < last; ++g) outer *= groups[g].size;
    for (int g = last + 1; g < static_cast<int>(groups.size()); ++g) inner *= groups[g].size;
    Array next = Array::empty({outer * inner}, out_dtype);
    if (!reduced_any) sum_pass<T>(next, current, outer, groups[last].size, inner);
    else if constexpr (std::is_same_v<T, float>) sum_pass<float>(next, current, outer, groups[last].size, inner);
    else sum_pass<std::int64_t>(next, current, outer, groups[last].size, inner);
    reduced_any = true;
    current = next;
    // The neighbours of the removed group are both kept: they merge.
    if (last > 0 && last + 1 < static_cast<int>(groups.size())) {
      groups[last - 1].size *= groups[last + 1].size;
      groups.erase(groups.begin() + last, groups.begin() + last + 2);
    } else {
      groups.erase(groups.begin() + last);
    }
  }
  if (reduced_any) return current;
  return x.dtype() == out_dtype ? x.copy() : cast(x, out_dtype);
}

Array reduce_sum(const Array& x, const std::vector<bool>& reduce, const Shape& out_shape) {
  switch (x.dtype()) {
    case DType::float32: return reduce_marked<float>(x, reduce, DType::float32).reshape(out_shape);
    case DType::int32: return reduce_marked<std::int32_t>(x, reduce, DType::int64).reshape(out_shape);
    case DType::int64: return reduce_marked<std::int64_t>(x, reduce, DType::int64).reshape(out_shape);
    case DType::bool_: return reduce_marked<bool>(x, reduce, DType::int64).reshape(out_shape);
    default: break;
  }
  throw_type_error("sum", "input", "float32, bfloat16, int32, int64 or bool", dtype_received(x.dtype()));
}

// Marks the dims to reduce (each in [-ndim, ndim), at most once) and gives
// the output shape. A 0-d array accepts dim 0 or -1, which reduce nothing.
std::vector<bool> reduction_dims(const char* op, const Array& x, const std::vector<std::int64_t>& dims, bool keepdim,
                                 Shape& out_shape, std::int64_t& count) {
  const int n = x.ndim();
  const int range = std::max(n, 1);
  std::vector<bool> reduce(static_cast<std::size_t>(n), false);
  std::vector<bool> seen(static_cast<std::size_t>(range), false);
  for (std::int64_t dim : dims) {
    if (dim < -range || dim >= range)
      throw_value_error(op, "dim",
                        "dims in [" + std::to_string(-range) + ", " + std::to_string(range) +
                            ") for an input of shape " + shape_string(x.shape()),
                        std::to_string(dim));
    const std::int64_t d = dim < 0 ? dim + range : dim;
    if (seen[d]) throw_value_error(op, "dim", "each dim at most once", "dim " + std::to_string(dim) + " twice");
    seen[d] = true;
    if (n > 0) reduce[d] = true;
  }
  out_shape.clear();
  count = 1;
  for (int d = 0; d < n; ++d) {
    if (reduce[d]) {
      count *= x.shape()[d];
      if (keepdim) out_shape.push_back(1);
    } else {
      out_shape.push_back(x.shape()[d]);
    }
  }
  return reduce;
}

template <typename T>
Array scalar_array(DType dtype, T value) {
  Array a = Array::empty({}, dtype);
  *a.data<T>() = value;
  return a;
}

// value converted to an integer dtype, refusing what it cannot hold.
template <typename T>
T checked_integer(const char* op, std::int64_t value) {
  if (value < std::numeric_limits<T>::min() || value > std::numeric_limits<T>::max())
    throw_value_error(op, "value", "a value that fits the array's integer dtype", std::to_string(value));
  return static_cast<T>(value);
}

std::int64_t integral_value(const char* op, double value) {
  // 2^63 is exact in double; values at or beyond it do not fit int64.
  if (!(value == std::trunc(value)) || value < -9223372036854775808.0 || value >= 9223372036854775808.0)
    throw_value_error(op, "value", "a whole number that fits the array's integer dtype", std::to_string(value));
  return static_cast<std::int64_t>(value);
}

// A 0-d array of `dtype` holding value (for masked_fill).
Array scalar_of_dtype(const char* op, DType dtype, double value) {
  switch (dtype) {
    case DType::float32: return scalar_array<float>(dtype, static_cast<float>(value));
    case DType::int32:
      return scalar_array<std::int32_t>(dtype, checked_integer<std::int32_t>(op, integral_value(op, value)));
    case DType::int64: return scalar_array<std::int64_t>(dtype, integral_value(op, value));
    case DType::bool_: return scalar_array<bool>(dtype, value != 0.0);
    default: break;
  }
  throw_type_error(op, "input", "float32, int32, int64 or bool", dtype_received(dtype));
}

Array where_unchecked(const Array& condition, const Array& a, const Array& b, const Shape& shape) {
  Array out = Array::empty(shape, a.dtype());
  const cpu::BroadcastLayout layout = cpu::broadcast_layout(shape, {condition.shape(), a.shape(), b.shape()});
  const bool* c = condition.data<bool>();
  switch (a.itemsize()) {
    case 1: cpu::where(out.data<std::uint8_t>(), c, a.data<std::uint8_t>(), b.data<std::uint8_t>(), layout); break;
    case 2: cpu::where(out.data<std::uint16_t>(), c, a.data<std::uint16_t>(), b.data<std::uint16_t>(), layout); break;
    case 4: cpu::where(out.data<std::uint32_t>(), c, a.data<std::uint32_t>(), b.data<std::uint32_t>(), layout); break;
    default: cpu::where(out.data<std::uint64_t>(), c, a.data<std::uint64_t>(), b.data<std::uint64_t>(), layout); break;
  }
  return out;
}

template <typename From>
void cast_from(const Array& out, const Array& x) {
  const From* source = x.data<From>();
  const std::int64_t n = x.numel();
  switch (out.dtype()) {
    case DType::float32: cpu::cast(out.data<float>(), source, n); break;
    case DType::int32: cpu::cast(out.data<std::int32_t>(), source, n); break;
    case DType::int64: cpu::cast(out.data<std::int64_t>(), source, n); break;
    default: cpu::cast(out.data<bool>(), source, n); break;
  }
}

}  // namespace

cpu::BinaryOp parse_binary_op(const std::string& name) {
  if (name == "add") return cpu::BinaryOp::add;
  if (name == "sub") return cpu::BinaryOp::subtract;
  if (name == "mul") return cpu::BinaryOp::multiply;
  if (name == "div") return cpu::BinaryOp::divide;
  throw_value_error("binary", "op", "'add', 'sub', 'mul' or 'div'", "'" + name + "'");
}

cpu::CompareOp parse_compare_op(const std::string& name) {
  if (name == "eq") return cpu::CompareOp::equal;
  if (name == "ne") return cpu::CompareOp::not_equal;
  if (name == "lt") return cpu::CompareOp::less;
  if (name == "le") return cpu::CompareOp::less_equal;
  if (name == "gt") return cpu::CompareOp::greater;
  if (name == "ge") return cpu::CompareOp::greater_equal;
  throw_value_error("compare", "op", "'eq', 'ne', 'lt', 'le', 'gt' or 'ge'", "'" + name + "'");
}

Shape broadcast_shapes(const char* op, const char* a_name, const Shape& a, const char* b_name, const Shape& b) {
  const std::size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const std::int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da != db && da != 1 && db != 1)
      throw_value_error(op, b_name, std::string("a shape that broadcasts with '") + a_name + "' " + shape_string(a),
                        shape_string(b));
    out[i] = da == 1 ? db : da;
  }
  return out;
}

// ---------------------------------------------------------------- arithmetic --

Array binary(const Array& a, const Array& b, cpu::BinaryOp op) {
  const char* name = binary_op_name(op);
  // bfloat16 operands (both) are computed in float32 and rounded once
  // (ops/checks.h).
  const DType dtype = check_compute_dtype(name, "input", a);
  check_same_dtype(name, "other", b, "input", dtype);
  const Array a32 = widened(a), b32 = widened(b);
  Array out = Array::empty(broadcast_shapes(name, "input", a.shape(), "other", b.shape()), DType::float32);
  binary_into(out, a32, b32, op);
  return rounded_to(out, dtype);
}

Array binary_scalar(const Array& a, double scalar, bool scalar_first, cpu::BinaryOp op) {
  const DType dtype = check_compute_dtype(binary_op_name(op), "input", a);
  const Array a32 = widened(a);
  Array out = Array::empty(a.shape(), DType::float32);
  cpu::binary_scalar(out.data<float>(), a32.data<float>(), static_cast<float>(scalar), a.numel(), scalar_first, op);
  return rounded_to(out, dtype);
}

Array negative(const Array& a) {
  check_float32_cpu("neg", "input", a);
  Array out = Array::empty(a.shape(), DType::float32);
  cpu::binary_scalar(out.data<float>(), a.data<float>(), -1.0f, a.numel(), false, cpu::BinaryOp::multiply);
  return out;
}

void add_in_place(const Array& target, const Array& source) {
  check_float32_cpu("add_", "self", target);
  check_float32_cpu("add_", "other", source);
  check_same_shape("add_", "other", source, "self", target);
  if (overlaps(target, source) && target.raw_data() != source.raw_data())
    throw_value_error("add_", "other", "memory that is 'self' exactly or separate from it",
                      "a partially overlapping array");
  binary_into(target, target, source, cpu::BinaryOp::add);
}

std::pair<Array, Array> binary_backward(const Array& grad_output, const Array& a, const Array& b, cpu::BinaryOp op,
                                        bool need_a, bool need_b) {
  const std::string name = std::string(binary_op_name(op)) + "_backward";
  if (op != cpu::BinaryOp::multiply && op != cpu::BinaryOp::divide)
    throw_value_error(name, "op", "'mul' or 'div' (add and sub backward are sum_to_shape)", binary_op_name(op));
  check_float32_cpu(name.c_str(), "grad_output", grad_output);
  check_float32_cpu(name.c_str(), "input", a);
  check_float32_cpu(name.c_str(), "other", b);
  const Shape shape = broadcast_shapes(name.c_str(), "input", a.shape(), "other", b.shape());
  if (grad_output.shape() != shape)
    throw_value_error(name, "grad_output", "the broadcast shape " + shape_string(shape),
                      shape_string(grad_output.shape()));
  Array grad_a, grad_b;
  if (op == cpu::BinaryOp::multiply) {
    if (need_a) {
      Array product = Array::empty(shape, DType::float32);
      binary_into(product, grad_output, b, cpu::BinaryOp::multiply);
      grad_a = sum_to_shape(product, a.shape());
    }
    if (need_b) {
      Array product = Array::empty(shape, DType::float32);
      binary_into(product, grad_output, a, cpu::BinaryOp::multiply);
      grad_b = sum_to_shape(product, b.shape());
    }
    return {grad_a, grad_b};
  }
  // d(a/b)/da = 1/b, d(a/b)/db = -a/b^2 = -((g/b) a)/b: b is never squared,
  // so it cannot underflow where the quotient itself would not.
  Array quotient = Array::empty(shape, DType::float32);
  binary_into(quotient, grad_output, b, cpu::BinaryOp::divide);
  if (need_b) {
    Array term = Array::empty(shape, DType::float32);
    binary_into(term, quotient, a, cpu::BinaryOp::multiply);
    binary_into(term, term, b, cpu::BinaryOp::divide);
    grad_b = sum_to_shape(term, b.shape());
    negate_in_place(grad_b);  // term is ours, and so is its sum
  }
  if (need_a) grad_a = sum_to_shape(quotient, a.shape());
  return {grad_a, grad_b};
}

Array scalar_divide_backward(const Array& grad_output, const Array& a, double scalar) {
  check_float32_cpu("div_backward", "grad_output", grad_output);
  check_float32_cpu("div_backward", "input", a);
  check_same_shape("div_backward", "grad_output", grad_output, "input", a);
  Array term = Array::empty(a.shape(), DType::float32);
  binary_into(term, grad_output, a, cpu::BinaryOp::divide);
  cpu::binary_scalar(term.data<float>(), term.data<float>(), static_cast<float>(scalar), term.numel(), false,
                     cpu::BinaryOp::multiply);
  binary_into(term, term, a, cpu::BinaryOp::divide);
  negate_in_place(term);
  return term;
}

// ---------------------------------------------------------------- reductions --

Array sum(const Array& x, const std::vector<std::int64_t>& dims, bool keepdim) {
  check_defined_cpu("sum", "input", x);
  Shape out_shape;
  std::int64_t count = 0;
  const std::vector<bool> reduce = reduction_dims("sum", x, dims, keepdim, out_shape, count);
  // bfloat16: summed in float32, rounded once (ops/checks.h)
  if (x.dtype() == DType::bfloat16) return rounded_to(reduce_sum(widened(x), reduce, out_shape), DType::bfloat16);
  return reduce_sum(x, reduce, out_shape);
}

Array mean(const Array& x, const std::vector<std::int64_t>& dims, bool keepdim) {
  const DType dtype = check_compute_dtype("mean", "input", x);
  Shape out_shape;
  std::int64_t count = 0;
  const std::vector<bool> reduce = reduction_dims("mean", x, dims, keepdim, out_shape, count);
  Array out = reduce_sum(widened(x), reduce, out_shape);
  cpu::binary_scalar(out.data<float>(), out.data<float>(), static_cast<float>(count), out.numel(), false,
                     cpu::BinaryOp::divide);
  return rounded_to(out, dtype);
}

Array sum_to_shape(const Array& x, const Shape& shape) {
  check_float32_cpu("sum_to_shape", "input", x);
  const int n = x.ndim();
  const int lead = n - static_cast<int>(shape.size());
  bool broadcasts = lead >= 0;
  for (int d = std::max(lead, 0); d < n && broadcasts; ++d)
    broadcasts = shape[d - lead] == x.shape()[d] || shape[d - lead] == 1;
  if (!broadcasts)
    throw_value_error("sum_to_shape", "shape", "a shape that broadcasts to the input's " + shape_string(x.shape()),
                      shape_string(shape));
  if (lead == 0 && shape == x.shape()) return x;
  std::vector<bool> reduce(static_cast<std::size_t>(n), false);
  for (int d = 0; d < n; ++d) reduce[d] = d < lead || (shape[d - lead] == 1 && x.shape()[d] != 1);
  return reduce_sum(x, reduce, shape);
}

std::pair<Array, Array> max_last_dim(const Array& x) {
  check_float32_cpu("max", "input", x);
  if (x.ndim() == 0 || x.dim(-1) == 0)
    throw_value_error("max", "input", "a non-empty last dimension", "shape " + shape_string(x.shape()));
  Shape shape(x.shape().begin(), x.shape().end() - 1);
  Array values = Array::empty(shape, DType::float32);
  Array indices = Array::empty(shape, DType::int64);
  const std::int64_t columns = x.dim(-1);
  cpu::max_last_dim(values.data<float>(), indices.data<std::int64_t>(), x.data<float>(), x.numel() / columns, columns);
  return {values, indices};
}

// ------------------------------------------------------ comparisons, where --

Array compare(const Array& a, const Array& b, cpu::CompareOp op) {
  const char* name = compare_op_name(op);
  check_defined_cpu(name, "input", a);
  check_defined_cpu(name, "other", b);
  check_basic_dtype(name, "input", a.dtype());
  if (b.dtype() != a.dtype())
    throw_type_error(name, "other", std::string("the dtype of 'input', ") + dtype_name(a.dtype()),
                     dtype_name(b.dtype()));
  Array out = Array::empty(broadcast_shapes(name, "input", a.shape(), "other", b.shape()), DType::bool_);
  const cpu::BroadcastLayout layout = cpu::broadcast_layout(out.shape(), {a.shape(), b.shape()});
  bool* o = out.data<bool>();
  switch (a.dtype()) {
    case DType::float32: cpu::compare(o, a.data<float>(), b.data<float>(), layout, op); break;
    case DType::int32: cpu::compare(o, a.data<std::int32_t>(), b.data<std::int32_t>(), layout, op); break;
    case DType::int64: cpu::compare(o, a.data<std::int64_t>(), b.data<std::int64_t>(), layout, op); break;
    default: cpu::compare(o, a.data<bool>(), b.data<bool>(), layout, op); break;
  }
  return out;
}

Array where(const Array& condition, const Array& a, const Array& b) {
  check_dtype("where", "condition", condition, DType::bool_);
  check_cpu("where", "condition", condition);
  check_defined_cpu("where", "input", a);
  check_defined_cpu("where", "other", b);
  if (b.dtype() != a.dtype())
    throw_type_error("where", "other", std::string("the dtype of 'input', ") + dtype_name(a.dtype()),
                     dtype_name(b.dtype()));
  const Shape ab = broadcast_shapes("where", "input", a.shape(), "other", b.shape());
  const Shape shape = broadcast_shapes("where", "input and other (broadcast)", ab, "condition", condition.shape());
  return where_unchecked(condition, a, b, shape);
}

std::pair<Array, Array> where_backward(const Array& grad_output, const Array& condition, const Shape& a_shape,
                                       const Shape& b_shape, bool need_a, bool need_b) {
  check_float32_cpu("where_backward", "grad_output", grad_output);
  check_dtype("where_backward", "condition", condition, DType::bool_);
  check_cpu("where_backward", "condition", condition);
  const Shape ab = broadcast_shapes("where_backward", "input", a_shape, "other", b_shape);
  const Shape shape =
      broadcast_shapes("where_backward", "input and other (broadcast)", ab, "condition", condition.shape());
  if (grad_output.shape() != shape)
    throw_value_error("where_backward", "grad_output", "the broadcast shape " + shape_string(shape),
                      shape_string(grad_output.shape()));
  const Array zero = Array::zeros({}, DType::float32);
  Array grad_a, grad_b;
  if (need_a) grad_a = sum_to_shape(where_unchecked(condition, grad_output, zero, shape), a_shape);
  if (need_b) grad_b = sum_to_shape(where_unchecked(condition, zero, grad_output, shape), b_shape);
  return {grad_a, grad_b};
}

Array masked_fill(const Array& x, const Array& mask, double value) {
  check_defined_cpu("masked_fill", "input", x);
  check_dtype("masked_fill", "mask", mask, DType::bool_);
  check_cpu("masked_fill", "mask", mask);
  const Shape shape = broadcast_shapes("masked_fill", "input", x.shape(), "mask", mask.shape());
  if (shape != x.shape())
    throw_value_error("masked_fill", "mask", "a shape that broadcasts to the input's " + shape_string(x.shape()),
                      shape_string(mask.shape()));
  return where_unchecked(mask, scalar_of_dtype("masked_fill", x.dtype(), value), x, shape);
}

// --------------------------------------------------- casts, fills, ranges --

Array cast(const Array& x, DType dtype) {
  check_defined_cpu("cast", "input", x);
  // float32 <-> bfloat16: the exact conversions of cpu/convert.h.
  if (x.dtype() == DType::float32 && dtype == DType::bfloat16) {
    Array out = Array::empty(x.shape(), dtype);
    cpu::float_to_bfloat16(out.data<std::uint16_t>(), x.data<float>(), x.numel());
    return out;
  }
  if (x.dtype() == DType::bfloat16 && dtype == DType::float32) {
    Array out = Array::empty(x.shape(), dtype);
    cpu::bfloat16_to_float(out.data<float>(), x.data<std::uint16_t>(), x.numel());
    return out;
  }
  check_basic_dtype("cast", "input", x.dtype());
  check_basic_dtype("cast", "dtype", dtype);
  Array out = Array::empty(x.shape(), dtype);
  switch (x.dtype()) {
    case DType::float32: cast_from<float>(out, x); break;
    case DType::int32: cast_from<std::int32_t>(out, x); break;
    case DType::int64: cast_from<std::int64_t>(out, x); break;
    default: cast_from<bool>(out, x); break;
  }
  return out;
}

void fill(const Array& x, double value) {
  check_defined_cpu("fill_", "self", x);
  const std::int64_t n = x.numel();
  switch (x.dtype()) {
    case DType::float32: cpu::fill(x.data<float>(), static_cast<float>(value), n); return;
    case DType::int32:
      cpu::fill(x.data<std::int32_t>(), checked_integer<std::int32_t>("fill_", integral_value("fill_", value)), n);
      return;
    case DType::int64: cpu::fill(x.data<std::int64_t>(), integral_value("fill_", value), n); return;
    case DType::bool_: cpu::fill(x.data<bool>(), value != 0.0, n); return;
    default: break;
  }
  // float16 and bfloat16 have no fill kernel; zero is all-zero bits in both.
  if (value == 0.0) {
    if (x.nbytes() > 0) std::memset(x.raw_data(), 0, x.nbytes());
    return;
  }
  throw_type_error("fill_", "self", "float32, int32, int64 or bool (float16 and bfloat16: only 0)",
                   dtype_name(x.dtype()));
}

void fill_integer(const Array& x, std::int64_t value) {
  check_defined_cpu("fill_", "self", x);
  const std::int64_t n = x.numel();
  switch (x.dtype()) {
    case DType::int32: cpu::fill(x.data<std::int32_t>(), checked_integer<std::int32_t>("fill_", value), n); return;
    case DType::int64: cpu::fill(x.data<std::int64_t>(), value, n); return;
    default: fill(x, static_cast<double>(value)); return;
  }
}

Array arange(double start, double step, std::int64_t count) {
  if (count < 0) throw_value_error("arange", "count", "a count >= 0", std::to_string(count));
  Array out = Array::empty({count}, DType::float32);
  cpu::arange(out.data<float>(), start, step, count);
  return out;
}

Array arange_integer(std::int64_t start, std::int64_t step, std::int64_t count, DType dtype) {
  if (count < 0) throw_value_error("arange", "count", "a count >= 0", std::to_string(count));
  if (dtype != DType::int32 && dtype != DType::int64)
    throw_type_error("arange", "dtype", "int32 or int64", dtype_name(dtype));
  if (count > 0) {
    // The last value, start + (count - 1) step, must fit the dtype; the
    // overflow builtins (GCC, Clang) keep the check itself from overflowing.
    std::int64_t offset = 0, last = 0;
    const bool overflows =
        __builtin_mul_overflow(count - 1, step, &offset) || __builtin_add_overflow(start, offset, &last);
    const std::int64_t low =
        dtype == DType::int32 ? std::numeric_limits<std::int32_t>::min() : std::numeric_limits<std::int64_t>::min();
    const std::int64_t high =
        dtype == DType::int32 ? std::numeric_limits<std::int32_t>::max() : std::numeric_limits<std::int64_t>::max();
    if (overflows || start < low || start > high || last < low || last > high)
      throw_value_error(
          "arange", "end", std::string("a range whose values fit ") + dtype_name(dtype),
          "one from " + std::to_string(start) + " in " + std::to_string(count) + " steps of " + std::to_string(step));
  }
  Array out = Array::empty({count}, dtype);
  if (dtype == DType::int32) cpu::arange(out.data<std::int32_t>(), start, step, count);
  else cpu::arange(out.data<std::int64_t>(), start, step, count);
  return out;
}

}  // namespace attnkit::ops
