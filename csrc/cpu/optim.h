// CPU kernels of the optimizer family: one fused AdamW step over a list of
// tensors, and the pieces of gradient-norm clipping. The list is cut into
// chunks of at most kOptimChunk elements that do not depend on the thread
// count; the chunks are what threads share out.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cpu/optim_kernels.h"

namespace attnkit::cpu {

// One parameter's tensors, all of n elements. decay: whether weight decay
// applies to it.
struct AdamWTensors {
  float* param;
  float* exp_avg;
  float* exp_avg_sq;
  const float* grad;
  std::int64_t n;
  bool decay;
};

// One AdamW step, in place, over every tensor of the list. constants.decay
// is used for the tensors with decay set, 1 for the others.
void adamw_step(const AdamWTensors* tensors, std::size_t count, const optim_kernels::AdamWConstants& constants);

// A contiguous float buffer of n elements.
struct FloatSpan {
  float* data;
  std::int64_t n;
};

// The sum of x^2 over every element of every span, accumulated in double:
// the squares of floats are exact in double, and the sum is formed in one
// order fixed by the sizes alone (chunks summed in list order, 8 running sums
// per chunk), so it is bitwise the same for any thread count and ISA.
double sum_of_squares(const FloatSpan* spans, std::size_t count);

// x *= factor for every element of every span.
void scale_in_place(const FloatSpan* spans, std::size_t count, float factor);

// The kernels of one ISA (cpu/dispatch.h), single-threaded.
struct OptimKernels {
  // One AdamW step over n elements of one tensor, in place.
  void (*adamw_update)(float* param, float* exp_avg, float* exp_avg_sq, const float* grad, std::int64_t n,
                       const optim_kernels::AdamWConstants& constants);
};

}  // namespace attnkit::cpu
