#include "cpu/loss.h"

#include "core/threading.h"
#include "cpu/dispatch.h"

namespace attnkit::cpu {

namespace {

// Rows go to threads in chunks of at least ~16K logits: below that a
// parallel region costs more than it saves.
std::int64_t rows_per_chunk(std::int64_t vocab) {
  return vocab >= 16384 ? 1 : 16384 / vocab;
}

}  // namespace

void cross_entropy_forward(float* losses, float* statistics, const float* logits, const std::int64_t* targets,
                           std::int64_t N, std::int64_t vocab, std::int64_t ignore_index, float label_smoothing) {
  const auto kernel = active_kernels().loss->cross_entropy_forward;
  parallel_for(N, rows_per_chunk(vocab), [&](std::int64_t begin, std::int64_t end) {
    float* losses_rows = losses + begin;
    float* statistics_rows = statistics + 3 * begin;
    const float* logits_rows = logits + begin * vocab;
    const std::int64_t* targets_rows = targets + begin;
    const std::int64_t rows = end - begin;
    kernel(losses_rows, statistics_rows, logits_rows, targets_rows, rows, vocab, ignore_index, label_smoothing);
  });
}

void cross_entropy_backward(float* dlogits, const float* statistics, const float* grad_loss, std::int64_t grad_stride,
                            float grad_divisor, const float* logits, const std::int64_t* targets, std::int64_t N,
                            std::int64_t vocab, std::int64_t ignore_index, float label_smoothing) {
  const auto kernel = active_kernels().loss->cross_entropy_backward;
  parallel_for(N, rows_per_chunk(vocab), [&](std::int64_t begin, std::int64_t end) {
    float* dlogits_rows = dlogits + begin * vocab;
    const float* statistics_rows = statistics + 3 * begin;
    const float* grad_rows = grad_loss + begin * grad_stride;
    const float* logits_rows = logits + begin * vocab;
    const std::int64_t* targets_rows = targets + begin;
    const std::int64_t rows = end - begin;
    kernel(dlogits_rows, statistics_rows, grad_rows, grad_stride, grad_divisor, logits_rows, targets_rows, rows, vocab,
           ignore_index, label_smoothing);
  });
}

double sum_in_order(const float* values, std::int64_t N) {
  double sum = 0.0;
  for (std::int64_t i = 0; i < N; ++i) sum += values[i];
  return sum;
}

}  // namespace attnkit::cpu
