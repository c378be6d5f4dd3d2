// Loss ops: the checked, public C++ entry points.
#pragma once

#include <cstdint>
#include <string>

#include "core/array.h"

namespace attnkit::ops {

enum class LossReduction { none, mean, sum };

// "none", "mean" or "sum", as in PyTorch; ValueError otherwise.
LossReduction parse_loss_reduction(const std::string& reduction);

struct CrossEntropyOutputs {
  Array loss;        // float32 [] (mean, sum) or [N] (none)
  Array statistics;  // float32 [N, 3]: per row, max and sum of exp(logit - max) (high, low)
};

// logits float32 [N, V]; targets int64 or int32 [N], each in [0, V) or equal
// to ignore_index; label_smoothing in [0, 1]. "mean" averages over the rows
// whose target is not ignored (NaN when there are none, as in PyTorch).
CrossEntropyOutputs cross_entropy_forward(const Array& logits, const Array& targets, std::int64_t ignore_index,
                                          double label_smoothing, LossReduction reduction);
// dlogits [N, V] from grad_output (the shape of the forward's loss) and the
// forward's statistics.
Array cross_entropy_backward(const Array& grad_output, const Array& logits, const Array& targets,
                             const Array& statistics, std::int64_t ignore_index, double label_smoothing,
                             LossReduction reduction);

}  // namespace attnkit::ops
