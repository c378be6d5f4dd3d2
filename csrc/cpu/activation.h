// CPU activation kernels. The entry points split the work over OpenMP threads
// and hand each contiguous chunk to the kernel of the active ISA.
#pragma once

#include <cstdint>

namespace attnkit::cpu {

enum class GeluApproximation { none, tanh };

// y[n] = gelu(x[n])
void gelu_forward(float* y, const float* x, std::int64_t n, GeluApproximation approximation);
// dx[n] = dy[n] * gelu'(x[n]); dx may alias dy.
void gelu_backward(float* dx, const float* dy, const float* x, std::int64_t n,
                   GeluApproximation approximation);

// Per-ISA kernels over one contiguous range, single-threaded. tanh_form
// selects the tanh approximation.
namespace generic {
void gelu_forward(float* y, const float* x, std::int64_t n, bool tanh_form);
void gelu_backward(float* dx, const float* dy, const float* x, std::int64_t n, bool tanh_form);
}  // namespace generic
namespace avx2 {
void gelu_forward(float* y, const float* x, std::int64_t n, bool tanh_form);
void gelu_backward(float* dx, const float* dy, const float* x, std::int64_t n, bool tanh_form);
}  // namespace avx2
namespace avx512 {
void gelu_forward(float* y, const float* x, std::int64_t n, bool tanh_form);
void gelu_backward(float* dx, const float* dy, const float* x, std::int64_t n, bool tanh_form);
}  // namespace avx512

}  // namespace attnkit::cpu
