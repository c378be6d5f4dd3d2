#include "cpu/activation.h"

#include <algorithm>

#include "core/threading.h"
#include "cpu/dispatch.h"

namespace attnkit::cpu {

namespace {

// Elementwise kernels are split into blocks of whole cache lines, so no two
// threads write the same line and every chunk but the last is a whole number
// of vectors. Below ~16K elements a parallel region costs more than it saves.
constexpr std::int64_t kBlock = 256;
constexpr std::int64_t kGrainBlocks = 64;
constexpr std::int64_t kGrainElements = kBlock * kGrainBlocks;

template <typename Body>
void for_each_block(std::int64_t n, const Body& body) {
  parallel_for_blocks(n, kBlock, kGrainBlocks, body);
}

// y = f(x) and dx = dy * f'(x) over [0, n) with one of the ISA's kernels.
using ForwardKernel = decltype(ActivationKernels::relu_forward);
using BackwardKernel = decltype(ActivationKernels::relu_backward);

void run_forward(ForwardKernel kernel, float* y, const float* x, std::int64_t n) {
  for_each_block(n, [&](std::int64_t offset, std::int64_t count) { kernel(y + offset, x + offset, count); });
}

void run_backward(BackwardKernel kernel, float* dx, const float* dy, const float* x, std::int64_t n) {
  for_each_block(n,
                 [&](std::int64_t offset, std::int64_t count) { kernel(dx + offset, dy + offset, x + offset, count); });
}

// SwiGLU's output [N, H] is cut into tiles for the threads: whole rows when a
// row is short, so that H = 1 still runs many rows per kernel call; rows cut
// into column blocks when a row alone is worth a thread, so that N = 1 with a
// large H still uses every thread.
constexpr std::int64_t kRowBlock = 4096;

template <typename Body>
void for_each_tile(std::int64_t rows, std::int64_t hidden, const Body& body) {
  if (rows == 0 || hidden == 0) return;
  const std::int64_t block = std::min(hidden, kRowBlock);
  const std::int64_t blocks_per_row = (hidden + block - 1) / block;
  const std::int64_t grain = std::max<std::int64_t>(1, kGrainElements / block);
  parallel_for(rows * blocks_per_row, grain, [&](std::int64_t t0, std::int64_t t1) {
    if (blocks_per_row == 1) {
      body(t0, t1 - t0, std::int64_t(0), hidden);
      return;
    }
    for (std::int64_t t = t0; t < t1; ++t) {
      const std::int64_t column = (t % blocks_per_row) * block;
      body(t / blocks_per_row, std::int64_t(1), column, std::min(block, hidden - column));
    }
  });
}

}  // namespace

void gelu_forward(float* y, const float* x, std::int64_t n, GeluApproximation approximation) {
  const bool tanh_form = approximation == GeluApproximation::tanh;
  const auto kernel = active_kernels().activation->gelu_forward;
  for_each_block(n, [&](std::int64_t offset, std::int64_t count) { kernel(y + offset, x + offset, count, tanh_form); });
}

void gelu_backward(float* dx, const float* dy, const float* x, std::int64_t n, GeluApproximation approximation) {
  const bool tanh_form = approximation == GeluApproximation::tanh;
  const auto kernel = active_kernels().activation->gelu_backward;
  for_each_block(n, [&](std::int64_t offset, std::int64_t count) {
    kernel(dx + offset, dy + offset, x + offset, count, tanh_form);
  });
}

void relu_forward(float* y, const float* x, std::int64_t n) {
  run_forward(active_kernels().activation->relu_forward, y, x, n);
}

void relu_backward(float* dx, const float* dy, const float* x, std::int64_t n) {
  run_backward(active_kernels().activation->relu_backward, dx, dy, x, n);
}

void silu_forward(float* y, const float* x, std::int64_t n) {
  run_forward(active_kernels().activation->silu_forward, y, x, n);
}

void silu_backward(float* dx, const float* dy, const float* x, std::int64_t n) {
  run_backward(active_kernels().activation->silu_backward, dx, dy, x, n);
}

void tanh_forward(float* y, const float* x, std::int64_t n) {
  run_forward(active_kernels().activation->tanh_forward, y, x, n);
}

void tanh_backward(float* dx, const float* dy, const float* x, std::int64_t n) {
  run_backward(active_kernels().activation->tanh_backward, dx, dy, x, n);
}

void swiglu_forward(float* y, const float* x, std::int64_t N, std::int64_t H) {
  const auto kernel = active_kernels().activation->swiglu_forward;
  for_each_tile(N, H, [&](std::int64_t row, std::int64_t rows, std::int64_t column, std::int64_t columns) {
    kernel(y + row * H + column, x + row * 2 * H + column, rows, columns, H);
  });
}

void swiglu_backward(float* dx, const float* dy, const float* x, std::int64_t N, std::int64_t H) {
  const auto kernel = active_kernels().activation->swiglu_backward;
  for_each_tile(N, H, [&](std::int64_t row, std::int64_t rows, std::int64_t column, std::int64_t columns) {
    kernel(dx + row * 2 * H + column, dy + row * H + column, x + row * 2 * H + column, rows, columns, H);
  });
}

}  // namespace attnkit::cpu
