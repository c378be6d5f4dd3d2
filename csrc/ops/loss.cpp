#include "ops/loss.h"

#include <cmath>
#include <limits>

#include "core/errors.h"
#include "cpu/loss.h"
#include "ops/checks.h"

namespace attnkit::ops {
namespace {

// logits: float32 [N, V] on cpu with V >= 1 (the forward's may be bfloat16:
// ops/checks.h).
void check_logits(const char* op, const Array& logits, bool forward = false) {
  if (forward) {
    check_compute_dtype(op, "logits", logits);
  } else {
    check_dtype(op, "logits", logits, DType::float32);
    check_cpu(op, "logits", logits);
  }
  if (logits.ndim() != 2 || logits.dim(1) < 1)
    throw_value_error(op, "logits", "a 2-d array [N, V] with V >= 1", "shape " + shape_string(logits.shape()));
}

void check_label_smoothing(const char* op, double label_smoothing) {
  if (!(label_smoothing >= 0.0 && label_smoothing <= 1.0))
    throw_value_error(op, "label_smoothing", "a number in [0, 1]", number_text(label_smoothing, 9));
}

struct CheckedTargets {
  Array values;              // int64 [N]: the targets, widened when they came as int32
  std::int64_t counted = 0;  // how many are not ignore_index
};

template <class Index>
std::int64_t check_target_values(const char* op, const Index* targets, std::int64_t* widened, std::int64_t N,
                                 std::int64_t vocab, std::int64_t ignore_index) {
  std::int64_t counted = 0;
  for (std::int64_t i = 0; i < N; ++i) {
    const std::int64_t t = targets[i];
    if (t == ignore_index) {
      if (widened) widened[i] = t;
      continue;
    }
    if (t < 0 || t >= vocab)
      throw_value_error(
          op, "targets",
          "class indices in [0, " + std::to_string(vocab) + ") or ignore_index (" + std::to_string(ignore_index) + ")",
          std::to_string(t) + " at index " + std::to_string(i));
    if (widened) widened[i] = t;
    ++counted;
  }
  return counted;
}

// Every target is read here, before any kernel indexes logits with it.
CheckedTargets check_targets(const char* op, const Array& targets, std::int64_t N, std::int64_t vocab,
                             std::int64_t ignore_index) {
  check_defined(op, "targets", targets);
  check_cpu(op, "targets", targets);
  if (targets.dtype() != DType::int64 && targets.dtype() != DType::int32)
    throw_type_error(op, "targets", "int64 or int32", dtype_name(targets.dtype()));
  if (targets.shape() != Shape{N})
    throw_value_error(op, "targets", "shape " + shape_string(Shape{N}) + " (one class per row of logits)",
                      shape_string(targets.shape()));
  CheckedTargets out;
  if (targets.dtype() == DType::int64) {
    out.values = targets;
    out.counted = check_target_values(op, targets.data<std::int64_t>(), nullptr, N, vocab, ignore_index);
  } else {
    out.values = Array::empty({N}, DType::int64);
    out.counted =
        check_target_values(op, targets.data<std::int32_t>(), out.values.data<std::int64_t>(), N, vocab, ignore_index);
  }
  return out;
}

}  // namespace

LossReduction parse_loss_reduction(const std::string& reduction) {
  if (reduction == "none") return LossReduction::none;
  if (reduction == "mean") return LossReduction::mean;
  if (reduction == "sum") return LossReduction::sum;
  throw_value_error("cross_entropy", "reduction", "'none', 'mean' or 'sum'", "'" + reduction + "'");
}

CrossEntropyOutputs cross_entropy_forward(const Array& logits, const Array& targets, std::int64_t ignore_index,
                                          double label_smoothing, LossReduction reduction) {
  const char* op = "cross_entropy";
  check_logits(op, logits, true);
  check_label_smoothing(op, label_smoothing);
  const std::int64_t N = logits.dim(0);
  const std::int64_t vocab = logits.dim(1);
  const CheckedTargets checked = check_targets(op, targets, N, vocab, ignore_index);
  Array losses = Array::empty({N}, DType::float32);
  CrossEntropyOutputs out;
  out.statistics = Array::empty({N, 3}, DType::float32);
  const Array logits32 = widened(logits);
  cpu::cross_entropy_forward(losses.data<float>(), out.statistics.data<float>(), logits32.data<float>(),
                             checked.values.data<std::int64_t>(), N, vocab, ignore_index,
                             static_cast<float>(label_smoothing));
  if (reduction == LossReduction::none) {
    out.loss = rounded_to(losses, logits.dtype());
    return out;
  }
  double total = cpu::sum_in_order(losses.data<float>(), N);
  if (reduction == LossReduction::mean)
    total =
        checked.counted > 0 ? total / static_cast<double>(checked.counted) : std::numeric_limits<double>::quiet_NaN();
  out.loss = Array::empty({}, DType::float32);
  *out.loss.data<float>() = static_cast<float>(total);
  out.loss = rounded_to(out.loss, logits.dtype());
  return out;
}

Array cross_entropy_backward(const Array& grad_output, const Array& logits, const Array& targets,
                             const Array& statistics, std::int64_t ignore_index, double label_smoothing,
                             LossReduction reduction) {
  const char* op = "cross_entropy_backward";
  check_logits(op, logits);
  check_label_smoothing(op, label_smoothing);
  const std::int64_t N = logits.dim(0);
  const std::int64_t vocab = logits.dim(1);
  const CheckedTargets checked = check_targets(op, targets, N, vocab, ignore_index);
  check_dtype(op, "statistics", statistics, DType::float32);
  check_cpu(op, "statistics", statistics);
  if (statistics.shape() != Shape{N, 3})
    throw_value_error(op, "statistics", "shape " + shape_string(Shape{N, 3}), shape_string(statistics.shape()));
  check_dtype(op, "grad_output", grad_output, DType::float32);
  check_cpu(op, "grad_output", grad_output);
  const Shape loss_shape = reduction == LossReduction::none ? Shape{N} : Shape{};
  if (grad_output.shape() != loss_shape)
    throw_value_error(op, "grad_output", "shape " + shape_string(loss_shape) + " (the loss's shape)",
                      shape_string(grad_output.shape()));
  const std::int64_t grad_stride = reduction == LossReduction::none ? 1 : 0;
  // With no row counted, mean's gradient has nowhere to go; the divisor only
  // has to be harmless (every row is ignored and gets 0).
  const float grad_divisor =
      reduction == LossReduction::mean && checked.counted > 0 ? static_cast<float>(checked.counted) : 1.0f;
  Array dlogits = Array::empty(logits.shape(), DType::float32);
  cpu::cross_entropy_backward(dlogits.data<float>(), statistics.data<float>(), grad_output.data<float>(), grad_stride,
                              grad_divisor, logits.data<float>(), checked.values.data<std::int64_t>(), N, vocab,
                              ignore_index, static_cast<float>(label_smoothing));
  return dlogits;
}

}  // namespace attnkit::ops
