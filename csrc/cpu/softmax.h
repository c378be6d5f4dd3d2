// CPU softmax kernels. The entry points split the rows over attnkit's threads and
// hand each block of rows to the kernel of the active ISA; every row is
// computed the same way whatever the split, so results do not depend on the
// thread count.
#pragma once

#include <cstdint>

namespace attnkit::cpu {

// y[N, C] = softmax(scale * x[N, C]) along each row, or log_softmax when `log`;
// scale > 0.
void softmax_forward(float* y, const float* x, std::int64_t N, std::int64_t C, float scale, bool log);
// dx[N, C] from dy[N, C] and the forward's output y[N, C] (see softmax_kernels.h).
void softmax_backward(float* dx, const float* dy, const float* y, std::int64_t N, std::int64_t C, float scale,
                      bool log);

// The kernels of one ISA (cpu/dispatch.h), over `rows` consecutive rows of
// width C, single-threaded.
struct SoftmaxKernels {
  void (*softmax_forward)(float* y, const float* x, std::int64_t rows, std::int64_t C, float scale, bool log);
  void (*softmax_backward)(float* dx, const float* dy, const float* y, std::int64_t rows, std::int64_t C, float scale,
                           bool log);
};

}  // namespace attnkit::cpu
