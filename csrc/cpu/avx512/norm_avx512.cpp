// Normalization kernels compiled with the avx512 flags (see CMakeLists.txt);
// entered only when the CPU has avx512 (core/cpu_features.cpp).
#include "cpu/norm.h"
#include "cpu/norm_kernels.h"
#include "cpu/vec/vec_avx512.h"

namespace attnkit::cpu::avx512 {

void layer_norm_forward(float* y, float* mean, float* rstd, const float* x, const float* weight, const float* bias,
                        std::int64_t rows, std::int64_t C, float eps) {
  norm_kernels::layer_norm_forward<Vec>(y, mean, rstd, x, weight, bias, rows, C, eps);
}

void add_layer_norm_forward(float* sum, float* y, float* mean, float* rstd, const float* x, const float* residual,
                            const float* weight, const float* bias, std::int64_t rows, std::int64_t C, float eps) {
  norm_kernels::add_layer_norm_forward<Vec>(sum, y, mean, rstd, x, residual, weight, bias, rows, C, eps);
}

void layer_norm_backward(float* dx, float* dweight_partial, float* dbias_partial, const float* dy, const float* dsum,
                         const float* x, const float* weight, const float* mean, const float* rstd, std::int64_t rows,
                         std::int64_t C, float eps) {
  norm_kernels::layer_norm_backward<Vec>(dx, dweight_partial, dbias_partial, dy, dsum, x, weight, mean, rstd, rows, C,
                                         eps);
}

void rms_norm_forward(float* y, float* rstd, const float* x, const float* weight, std::int64_t rows, std::int64_t C,
                      float eps) {
  norm_kernels::rms_norm_forward<Vec>(y, rstd, x, weight, rows, C, eps);
}

void rms_norm_backward(float* dx, float* dweight_partial, const float* dy, const float* x, const float* weight,
                       const float* rstd, std::int64_t rows, std::int64_t C, float eps) {
  norm_kernels::rms_norm_backward<Vec>(dx, dweight_partial, dy, x, weight, rstd, rows, C, eps);
}

}  // namespace attnkit::cpu::avx512
