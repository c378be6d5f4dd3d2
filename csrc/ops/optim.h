// Optimizer ops: the checked, public C++ entry points.
#pragma once

#include <cstdint>
#include <vector>

#include "core/array.h"

namespace attnkit::ops {

struct AdamWOptions {
  std::int64_t step;  // t >= 1, the number of this step (bias correction)
  double lr;
  double beta1;
  double beta2;
  double eps;
  double weight_decay;
};

// One AdamW step (torch.optim.AdamW's update; see cpu/optim_kernels.h) over
// every parameter of the lists, in place on params, exp_avgs and exp_avg_sqs.
// All arrays float32 on cpu, the four of each parameter of one shape, each
// written array with memory of its own. decay_mask: empty (decay all) or
// one flag per parameter.
void adamw_step(const std::vector<Array>& params, const std::vector<Array>& grads, const std::vector<Array>& exp_avgs,
                const std::vector<Array>& exp_avg_sqs, const std::vector<bool>& decay_mask,
                const AdamWOptions& options);

// The sum of the squares of every element of float32 `arrays`, accumulated
// in double; bitwise the same for any thread count.
double sum_of_squares(const std::vector<Array>& arrays);

// Multiplies every element of the float32 `arrays` by factor (rounded to
// float), in place.
void scale_in_place(const std::vector<Array>& arrays, double factor);

}  // namespace attnkit::ops
