// CPU elementwise kernels: arithmetic with numpy broadcasting, comparisons,
// where/masked_fill, deterministic sums, max over the last dimension, dtype
// casts, fills and ranges. The entry points split the work over attnkit's
// threads; the float arithmetic and the sums run in the active ISA's kernel.
#pragma once

#include <cstdint>
#include <vector>

namespace attnkit::cpu {

enum class BinaryOp : std::uint8_t { add, subtract, multiply, divide };
enum class CompareOp : std::uint8_t { equal, not_equal, less, less_equal, greater, greater_equal };

// ------------------------------------------------------------ broadcasting --
// How an op walks operands that broadcast against its contiguous output (the
// shape family's strided copies use the same walk with one operand). The
// output's dimensions are simplified without changing which elements meet:
// size-1 dimensions are dropped and neighbours are merged wherever every
// operand steps through them as through one dimension. Every operand has a
// stride per remaining dimension, in elements: 0 along a dimension it is
// broadcast over. There are always at least two dimensions (size-1 ones are
// put in front), so the last two form the [rows, columns] tiles the kernels
// take; with no broadcasting the whole op is one [1, numel] tile.
constexpr int kMaxBroadcastOperands = 3;

struct BroadcastLayout {
  std::vector<std::int64_t> sizes;
  std::vector<std::int64_t> strides[kMaxBroadcastOperands];
  int operands = 0;
  std::int64_t numel() const;
};

// Each operand's shape must broadcast to `output` (checked by the caller):
// right-aligned, every size equal to the output's or 1.
BroadcastLayout broadcast_layout(const std::vector<std::int64_t>& output,
                                 const std::vector<std::vector<std::int64_t>>& operands);

// out = a op b over a two-operand layout (operand 0 is a, 1 is b). out may be
// a itself when a is not broadcast (each element is read before it is written).
void binary(float* out, const float* a, const float* b, const BroadcastLayout& layout, BinaryOp op);
// out[i] = a[i] op scalar, or scalar op a[i] with scalar_first; out may be a.
void binary_scalar(float* out, const float* a, float scalar, std::int64_t n, bool scalar_first, BinaryOp op);

// out = a op b as 0/1 bytes over a two-operand layout; T is float, std::int32_t,
// std::int64_t or bool. NaN compares unequal to everything, as in IEEE 754.
template <typename T>
void compare(bool* out, const T* a, const T* b, const BroadcastLayout& layout, CompareOp op);

// out = condition ? a : b over a three-operand layout (condition, a, b). T is
// any trivially copyable element of 1, 2, 4 or 8 bytes: the values are copied,
// never computed with.
template <typename T>
void where(T* out, const bool* condition, const T* a, const T* b, const BroadcastLayout& layout);

// ---------------------------------------------------------------- reductions --
// out[o, i] = sum over r of x[o, r, i]; x [outer, reduced, inner], out
// [outer, inner]. Pairwise: the sum is a tree of partial sums whose shape
// depends on the sizes alone, so the result is bitwise the same for any thread
// count, and its error grows with log(reduced), not reduced. reduced = 0 gives 0.
void sum(float* out, const float* x, std::int64_t outer, std::int64_t reduced, std::int64_t inner);
// The same for integers and booleans, exactly, in int64 (wrapping on overflow).
template <typename T>
void sum_integer(std::int64_t* out, const T* x, std::int64_t outer, std::int64_t reduced, std::int64_t inner);

// values[r] = max over c of x[r, c], indices[r] = the first c where it occurs;
// x [rows, columns], columns >= 1. NaN counts as larger than every number, so
// a row with a NaN gives NaN and the index of its first NaN.
void max_last_dim(float* values, std::int64_t* indices, const float* x, std::int64_t rows, std::int64_t columns);

// ------------------------------------------------------- casts, fill, range --
// out[i] = x[i] converted; From and To are float, std::int32_t, std::int64_t or
// bool. Float to integer truncates toward zero and saturates at the integer
// type's limits; NaN becomes 0 (C++ leaves those cases undefined). Anything
// nonzero becomes true.
template <typename From, typename To>
void cast(To* out, const From* x, std::int64_t n);

// out[i] = value.
template <typename T>
void fill(T* out, T value, std::int64_t n);

// out[i] = start + i * step, evaluated in T's arithmetic (double for floats,
// rounded once to float).
void arange(float* out, double start, double step, std::int64_t n);
template <typename T>
void arange(T* out, std::int64_t start, std::int64_t step, std::int64_t n);

// --------------------------------------------------------- per-ISA kernels --
// The kernels of one ISA (cpu/dispatch.h), single-threaded.
struct ElementwiseKernels {
  // out[r * out_row_stride + c] = a[r * a_row_stride + c * a_step] op b[...]
  // for r < rows, c < columns, where a_step and b_step (the column strides)
  // are 0 or 1: a varying along the row or one value repeated.
  void (*binary_tile)(float* out, const float* a, const float* b, std::int64_t rows, std::int64_t columns,
                      std::int64_t out_row_stride, std::int64_t a_row_stride, std::int64_t b_row_stride, int a_step,
                      int b_step, BinaryOp op);
  // The pairwise sum of x[0, n).
  float (*sum_contiguous)(const float* x, std::int64_t n);
  // out[c] = sum over r < rows of x[r * row_stride + c] for c < columns, as a
  // tree that depends on rows alone.
  void (*sum_columns)(float* out, const float* x, std::int64_t rows, std::int64_t columns, std::int64_t row_stride);
};

}  // namespace attnkit::cpu
