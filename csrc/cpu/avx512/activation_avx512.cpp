// The activation kernels compiled with the avx512 flags (see CMakeLists.txt);
// entered only when the CPU has avx512 (core/cpu_features.cpp).
#include "cpu/activation.h"
#include "cpu/activation_kernels.h"
#include "cpu/vec/vec_avx512.h"

namespace attnkit::cpu::avx512 {

void gelu_forward(float* y, const float* x, std::int64_t n, bool tanh_form) {
  activation_kernels::gelu_forward<Vec>(y, x, n, tanh_form);
}

void gelu_backward(float* dx, const float* dy, const float* x, std::int64_t n, bool tanh_form) {
  activation_kernels::gelu_backward<Vec>(dx, dy, x, n, tanh_form);
}

void relu_forward(float* y, const float* x, std::int64_t n) {
  activation_kernels::relu_forward<Vec>(y, x, n);
}

void relu_backward(float* dx, const float* dy, const float* x, std::int64_t n) {
  activation_kernels::relu_backward<Vec>(dx, dy, x, n);
}

void silu_forward(float* y, const float* x, std::int64_t n) {
  activation_kernels::silu_forward<Vec>(y, x, n);
}

void silu_backward(float* dx, const float* dy, const float* x, std::int64_t n) {
  activation_kernels::silu_backward<Vec>(dx, dy, x, n);
}

void tanh_forward(float* y, const float* x, std::int64_t n) {
  activation_kernels::tanh_forward<Vec>(y, x, n);
}

void tanh_backward(float* dx, const float* dy, const float* x, std::int64_t n) {
  activation_kernels::tanh_backward<Vec>(dx, dy, x, n);
}

void swiglu_forward(float* y, const float* x, std::int64_t rows, std::int64_t columns, std::int64_t hidden) {
  activation_kernels::swiglu_forward<Vec>(y, x, rows, columns, hidden);
}

void swiglu_backward(float* dx, const float* dy, const float* x, std::int64_t rows, std::int64_t columns,
                     std::int64_t hidden) {
  activation_kernels::swiglu_backward<Vec>(dx, dy, x, rows, columns, hidden);
}

}  // namespace attnkit::cpu::avx512
