// Argument checks shared by the ops/ entry points. Each throws TypeError or
// ValueError with the op, the argument, what was expected and what came.
#pragma once

#include <cstdint>
#include <string>

#include "core/array.h"

namespace attnkit::ops {

// A dtype as an error message names what came: float16 says that no op
// computes in it, bfloat16 that this op takes float32 only.
std::string dtype_received(DType dtype);

void check_defined(const char* op, const char* argument, const Array& a);
void check_dtype(const char* op, const char* argument, const Array& a, DType expected);
void check_cpu(const char* op, const char* argument, const Array& a);
void check_same_shape(const char* op, const char* argument, const Array& a, const char* other_argument,
                      const Array& other);
// The bias of a linear layer or product with n output features: undefined
// (none), or float32 [n] on cpu (or bfloat16 [n] where allow_bfloat16).
void check_bias(const char* op, const Array& bias, std::int64_t n, bool allow_bfloat16 = false);

// bfloat16 in the forward ops (inference on bfloat16 weights). An op that
// computes in float32 also takes bfloat16: its floating-point inputs are all
// float32 or all bfloat16 (a mix is refused, naming the argument: convert
// explicitly), a bfloat16 input is widened exactly to float32, the float32
// kernel runs, and each result comes back in the inputs' dtype, rounded once
// (nearest, ties to even). Statistics saved for a backward (mean, rstd, lse)
// stay float32; the backward ops take float32 only.
//
// a is float32 or bfloat16 on cpu; returns its dtype.
DType check_compute_dtype(const char* op, const char* argument, const Array& a);
// a has the dtype of first_argument, `expected` (TypeError naming both).
void check_same_dtype(const char* op, const char* argument, const Array& a, const char* first_argument, DType expected);
// a as float32: a itself, or (bfloat16) its exact widening into a new array.
Array widened(const Array& a);
// A float32 result in `dtype`: y itself, or (bfloat16) y rounded once.
Array rounded_to(const Array& y, DType dtype);

// A number for an error message, with enough significant digits to show the
// value that came: 9 for a float32 value, 17 for a double.
std::string number_text(double value, int significant_digits = 17);

// Whether the bytes of a and b overlap (an output must not alias an input
// that a kernel reads after writing).
bool overlaps(const Array& a, const Array& b);

}  // namespace attnkit::ops
