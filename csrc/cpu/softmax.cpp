#include "cpu/softmax.h"

#include "core/threading.h"
#include "cpu/dispatch.h"

namespace attnkit::cpu {

namespace {

// Rows go to threads in chunks of at least ~16K elements: below that a
// parallel region costs more than it saves.
std::int64_t rows_per_chunk(std::int64_t C) {
  return C >= 16384 ? 1 : 16384 / (C > 0 ? C : 1);
}

}  // namespace

void softmax_forward(float* y, const float* x, std::int64_t N, std::int64_t C, float scale, bool log) {
  const auto kernel = active_kernels().softmax->softmax_forward;
  parallel_for(N, rows_per_chunk(C), [&](std::int64_t begin, std::int64_t end) {
    float* y_rows = y + begin * C;
    const float* x_rows = x + begin * C;
    kernel(y_rows, x_rows, end - begin, C, scale, log);
  });
}

void softmax_backward(float* dx, const float* dy, const float* y, std::int64_t N, std::int64_t C, float scale,
                      bool log) {
  const auto kernel = active_kernels().softmax->softmax_backward;
  parallel_for(N, rows_per_chunk(C), [&](std::int64_t begin, std::int64_t end) {
    float* dx_rows = dx + begin * C;
    const float* dy_rows = dy + begin * C;
    const float* y_rows = y + begin * C;
    kernel(dx_rows, dy_rows, y_rows, end - begin, C, scale, log);
  });
}

}  // namespace attnkit::cpu
