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

// y = max(x, 0), elementwise; x float32, any shape.
Array relu_forward(const Array& x);
// dx = dy * relu'(x) (0 at x = 0); dy and x float32 of one shape.
Array relu_backward(const Array& dy, const Array& x);

// y = x * sigmoid(x), elementwise; x float32, any shape.
Array silu_forward(const Array& x);
// dx = dy * silu'(x); dy and x float32 of one shape.
Array silu_backward(const Array& dy, const Array& x);

// y = tanh(x), elementwise; x float32, any shape.
Array tanh_forward(const Array& x);
// dx = dy * (1 - tanh(x)^2), from x (accurate where tanh(x) rounds to +-1);
// dy and x float32 of one shape.
Array tanh_backward(const Array& dy, const Array& x);

// x [..., 2H] float32 -> y [..., H] = silu(x[..., :H]) * x[..., H:]: the gate
// half first, as when one Linear computes the gate and up projections.
Array swiglu_forward(const Array& x);
// dy [..., H], x [..., 2H] -> dx [..., 2H].
Array swiglu_backward(const Array& dy, const Array& x);

}  // namespace attnkit::ops
