// Argument checks shared by the ops/ entry points. Each throws TypeError or
// ValueError with the op, the argument, what was expected and what came.
#pragma once

#include <cstdint>
#include <string>

#include "core/array.h"

namespace attnkit::ops {

// A dtype as an error message names what came: float16 and bfloat16 say that
// no op computes in them yet (until low-precision compute lands; then this
// note goes).
std::string dtype_received(DType dtype);

void check_defined(const char* op, const char* argument, const Array& a);
void check_dtype(const char* op, const char* argument, const Array& a, DType expected);
void check_cpu(const char* op, const char* argument, const Array& a);
void check_same_shape(const char* op, const char* argument, const Array& a, const char* other_argument,
                      const Array& other);
// The bias of a linear layer or product with n output features: undefined
// (none), or float32 [n] on cpu.
void check_bias(const char* op, const Array& bias, std::int64_t n);

// A number for an error message, with enough significant digits to show the
// value that came: 9 for a float32 value, 17 for a double.
std::string number_text(double value, int significant_digits = 17);

// Whether the bytes of a and b overlap (an output must not alias an input
// that a kernel reads after writing).
bool overlaps(const Array& a, const Array& b);

}  // namespace attnkit::ops
