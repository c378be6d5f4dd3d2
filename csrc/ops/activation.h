// Activation ops: the checked, public C++ entry points.
#pragma once

#include <string>

#include "core/array.h"
#include "cpu/activation.h"

namespace attnkit::ops {

// "none" (exact, erf) or "tanh", as in PyTorch; ValueError otherwise.
cpu::GeluApproximation parse_gelu_approximation(const std::string& approximate);

// y = gelu(x), elementwise; x float32, any shape.
Array gelu_forward(const Array& x, cpu::GeluApproximation approximation);
// dx = dy * gelu'(x); dy and x float32 of one shape.
Array gelu_backward(const Array& dy, const Array& x, cpu::GeluApproximation approximation);

}  // namespace attnkit::ops
