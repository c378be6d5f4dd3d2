// Softmax kernels compiled with the avx2 flags (see CMakeLists.txt); entered
// only when the CPU has avx2 (core/cpu_features.cpp).
#include "cpu/softmax.h"
#include "cpu/softmax_kernels.h"
#include "cpu/vec/vec_avx2.h"

namespace attnkit::cpu::avx2 {

void softmax_forward(float* y, const float* x, std::int64_t rows, std::int64_t C, float scale, bool log) {
  softmax_kernels::softmax_forward<Vec>(y, x, rows, C, scale, log);
}

void softmax_backward(float* dx, const float* dy, const float* y, std::int64_t rows, std::int64_t C, float scale,
                      bool log) {
  softmax_kernels::softmax_backward<Vec>(dx, dy, y, rows, C, scale, log);
}

}  // namespace attnkit::cpu::avx2
