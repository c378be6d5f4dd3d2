// The AdamW update compiled with the avx2 flags (see CMakeLists.txt); entered
// only when the CPU has avx2 (core/cpu_features.cpp).
#include "cpu/optim.h"
#include "cpu/optim_kernels.h"
#include "cpu/vec/vec_avx2.h"

namespace attnkit::cpu::avx2 {

void adamw_update(float* param, float* exp_avg, float* exp_avg_sq, const float* grad, std::int64_t n,
                  const optim_kernels::AdamWConstants& constants) {
  optim_kernels::adamw_update<Vec>(param, exp_avg, exp_avg_sq, grad, n, constants);
}

}  // namespace attnkit::cpu::avx2
