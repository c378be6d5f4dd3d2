// Cross-entropy kernels compiled with the avx2 flags (see CMakeLists.txt);
// entered only when the CPU has avx2 (core/cpu_features.cpp).
#include "cpu/loss.h"
#include "cpu/loss_kernels.h"
#include "cpu/vec/vec_avx2.h"

namespace attnkit::cpu::avx2 {

void cross_entropy_forward(float* losses, float* statistics, const float* logits, const std::int64_t* targets,
                           std::int64_t rows, std::int64_t vocab, std::int64_t ignore_index, float label_smoothing) {
  loss_kernels::cross_entropy_forward<Vec>(losses, statistics, logits, targets, rows, vocab, ignore_index,
                                           label_smoothing);
}

void cross_entropy_backward(float* dlogits, const float* statistics, const float* grad_loss, std::int64_t grad_stride,
                            float grad_divisor, const float* logits, const std::int64_t* targets, std::int64_t rows,
                            std::int64_t vocab, std::int64_t ignore_index, float label_smoothing) {
  loss_kernels::cross_entropy_backward<Vec>(dlogits, statistics, grad_loss, grad_stride, grad_divisor, logits, targets,
                                            rows, vocab, ignore_index, label_smoothing);
}

}  // namespace attnkit::cpu::avx2
