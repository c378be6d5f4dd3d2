// CPU activation kernels. The entry points split the work over attnkit's
// threads and hand each contiguous chunk to the kernel of the active ISA.
#pragma once

#include <cstdint>

namespace attnkit::cpu {

enum class GeluApproximation { none, tanh };

// y[n] = gelu(x[n])
void gelu_forward(float* y, const float* x, std::int64_t n, GeluApproximation approximation);
// dx[n] = dy[n] * gelu'(x[n]); dx may alias dy.
void gelu_backward(float* dx, const float* dy, const float* x, std::int64_t n, GeluApproximation approximation);

// y[n] = max(x[n], 0)
void relu_forward(float* y, const float* x, std::int64_t n);
// dx[n] = dy[n] * relu'(x[n]) (0 at x = 0); dx may alias dy.
void relu_backward(float* dx, const float* dy, const float* x, std::int64_t n);

// y[n] = x[n] * sigmoid(x[n])
void silu_forward(float* y, const float* x, std::int64_t n);
// dx[n] = dy[n] * silu'(x[n]); dx may alias dy.
void silu_backward(float* dx, const float* dy, const float* x, std::int64_t n);

// y[n] = tanh(x[n])
void tanh_forward(float* y, const float* x, std::int64_t n);
// dx[n] = dy[n] * tanh'(x[n]) = dy[n] * (1 - tanh(x[n])^2); dx may alias dy.
void tanh_backward(float* dx, const float* dy, const float* x, std::int64_t n);

// SwiGLU with the gate and up projections fused in one input:
// x [N, 2H] (gate = x[:, :H], up = x[:, H:]) -> y [N, H] = silu(gate) * up.
void swiglu_forward(float* y, const float* x, std::int64_t N, std::int64_t H);
// dy [N, H], x [N, 2H] -> dx [N, 2H] = [dy * up * silu'(gate), dy * silu(gate)].
void swiglu_backward(float* dx, const float* dy, const float* x, std::int64_t N, std::int64_t H);

// The kernels of one ISA (cpu/dispatch.h), over one contiguous range,
// single-threaded. tanh_form selects GELU's tanh approximation. The SwiGLU
// kernels take a tile of `rows` x `columns` outputs whose rows lie `hidden`
// (x, dx: 2 * hidden) floats apart.
struct ActivationKernels {
  void (*gelu_forward)(float* y, const float* x, std::int64_t n, bool tanh_form);
  void (*gelu_backward)(float* dx, const float* dy, const float* x, std::int64_t n, bool tanh_form);
  void (*relu_forward)(float* y, const float* x, std::int64_t n);
  void (*relu_backward)(float* dx, const float* dy, const float* x, std::int64_t n);
  void (*silu_forward)(float* y, const float* x, std::int64_t n);
  void (*silu_backward)(float* dx, const float* dy, const float* x, std::int64_t n);
  void (*tanh_forward)(float* y, const float* x, std::int64_t n);
  void (*tanh_backward)(float* dx, const float* dy, const float* x, std::int64_t n);
  void (*swiglu_forward)(float* y, const float* x, std::int64_t rows, std::int64_t columns, std::int64_t hidden);
  void (*swiglu_backward)(float* dx, const float* dy, const float* x, std::int64_t rows, std::int64_t columns,
                          std::int64_t hidden);
};

}  // namespace attnkit::cpu
