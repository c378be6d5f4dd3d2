// CPU cross-entropy kernels (log-softmax fused in). The entry points split
// the rows over attnkit's threads and hand each block of rows to the kernel of
// the active ISA; every row is computed the same way whatever the split.
#pragma once

#include <cstdint>

namespace attnkit::cpu {

// losses[N] (0 on rows whose target is ignore_index) and statistics[N, 3] =
// (max, sum of exp(logit - max) as high + low floats) per row of
// logits[N, vocab]; targets[N] must
// be in [0, vocab) or ignore_index. See loss_kernels.h.
void cross_entropy_forward(float* losses, float* statistics, const float* logits, const std::int64_t* targets,
                           std::int64_t N, std::int64_t vocab, std::int64_t ignore_index, float label_smoothing);
// dlogits[N, vocab] from the saved statistics; row r's upstream gradient is
// grad_loss[r * grad_stride] / grad_divisor.
void cross_entropy_backward(float* dlogits, const float* statistics, const float* grad_loss, std::int64_t grad_stride,
                            float grad_divisor, const float* logits, const std::int64_t* targets, std::int64_t N,
                            std::int64_t vocab, std::int64_t ignore_index, float label_smoothing);
// sum of values[N], added in index order in double precision: the same bits
// for any thread count, and no error of its own worth counting.
double sum_in_order(const float* values, std::int64_t N);

// The kernels of one ISA (cpu/dispatch.h), over `rows` consecutive rows,
// single-threaded.
struct LossKernels {
  void (*cross_entropy_forward)(float* losses, float* statistics, const float* logits, const std::int64_t* targets,
                                std::int64_t rows, std::int64_t vocab, std::int64_t ignore_index,
                                float label_smoothing);
  void (*cross_entropy_backward)(float* dlogits, const float* statistics, const float* grad_loss,
                                 std::int64_t grad_stride, float grad_divisor, const float* logits,
                                 const std::int64_t* targets, std::int64_t rows, std::int64_t vocab,
                                 std::int64_t ignore_index, float label_smoothing);
};

}  // namespace attnkit::cpu
