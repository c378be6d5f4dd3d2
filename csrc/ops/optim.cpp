#include "ops/optim.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "core/errors.h"
#include "cpu/optim.h"
#include "ops/checks.h"

namespace attnkit::ops {
namespace {

constexpr const char* kAdamW = "adamw_";

std::string element_name(const char* list, std::size_t i) {
  return std::string(list) + "[" + std::to_string(i) + "]";
}

void check_float32_cpu(const char* op, const std::string& argument, const Array& a) {
  check_dtype(op, argument.c_str(), a, DType::float32);
  check_cpu(op, argument.c_str(), a);
}

// A list argument must have one entry per parameter.
void check_list_length(const char* argument, std::size_t got, std::size_t expected) {
  if (got != expected)
    throw_value_error(kAdamW, argument, "a list of " + std::to_string(expected) + " arrays (one per parameter)",
                      "a list of " + std::to_string(got));
}

void check_range(const char* argument, double value, double low, bool low_inclusive, double high,
                 const std::string& expected) {
  const bool above = low_inclusive ? value >= low : value > low;
  if (!(above && value < high)) throw_value_error(kAdamW, argument, expected, number_text(value));
}

struct NamedRange {
  std::uintptr_t begin;
  std::uintptr_t end;
  std::string name;
};

// The arrays the step writes (params, exp_avgs, exp_avg_sqs) must not share
// memory with each other or with any gradient: an update would read values
// another part of it had already changed (a tied weight listed twice would be
// stepped twice).
void check_written_memory_is_disjoint(const std::vector<Array>& params, const std::vector<Array>& grads,
                                      const std::vector<Array>& exp_avgs, const std::vector<Array>& exp_avg_sqs) {
  std::vector<NamedRange> written, read;
  auto add = [](std::vector<NamedRange>& ranges, const Array& a, const std::string& name) {
    if (a.nbytes() == 0) return;
    const auto begin = reinterpret_cast<std::uintptr_t>(a.raw_data());
    ranges.push_back({begin, begin + a.nbytes(), name});
  };
  for (std::size_t i = 0; i < params.size(); ++i) {
    add(written, params[i], element_name("params", i));
    add(written, exp_avgs[i], element_name("exp_avgs", i));
    add(written, exp_avg_sqs[i], element_name("exp_avg_sqs", i));
    add(read, grads[i], element_name("grads", i));
  }
  auto by_begin = [](const NamedRange& a, const NamedRange& b) { return a.begin < b.begin; };
  std::sort(written.begin(), written.end(), by_begin);
  for (std::size_t k = 1; k < written.size(); ++k)
    if (written[k].begin < written[k - 1].end)
      throw_value_error(kAdamW, written[k].name.c_str(), "memory of its own",
                        "memory shared with '" + written[k - 1].name + "'");
  for (const NamedRange& grad : read) {
    // The written range starting last at or before grad.end - 1 is the only
    // one that can overlap it, since written ranges are disjoint and sorted.
    auto after = std::upper_bound(written.begin(), written.end(), grad.end - 1,
                                  [](std::uintptr_t address, const NamedRange& r) { return address < r.begin; });
    if (after != written.begin() && std::prev(after)->end > grad.begin)
      throw_value_error(kAdamW, grad.name.c_str(), "memory apart from what the step writes",
                        "memory shared with '" + std::prev(after)->name + "'");
  }
}

std::vector<cpu::FloatSpan> float_spans(const char* op, const char* list, const std::vector<Array>& arrays) {
  std::vector<cpu::FloatSpan> spans;
  spans.reserve(arrays.size());
  for (std::size_t i = 0; i < arrays.size(); ++i) {
    check_float32_cpu(op, element_name(list, i), arrays[i]);
    spans.push_back({arrays[i].data<float>(), arrays[i].numel()});
  }
  return spans;
}

}  // namespace

void adamw_step(const std::vector<Array>& params, const std::vector<Array>& grads, const std::vector<Array>& exp_avgs,
                const std::vector<Array>& exp_avg_sqs, const std::vector<bool>& decay_mask,
                const AdamWOptions& options) {
  const std::size_t n = params.size();
  check_list_length("grads", grads.size(), n);
  check_list_length("exp_avgs", exp_avgs.size(), n);
  check_list_length("exp_avg_sqs", exp_avg_sqs.size(), n);
  if (!decay_mask.empty() && decay_mask.size() != n)
    throw_value_error(kAdamW, "decay_mask", "None or a list of " + std::to_string(n) + " bools (one per parameter)",
                      "a list of " + std::to_string(decay_mask.size()));
  for (std::size_t i = 0; i < n; ++i) {
    const std::string param_name = element_name("params", i);
    check_float32_cpu(kAdamW, param_name, params[i]);
    const std::pair<const char*, const Array*> others[] = {
        {"grads", &grads[i]}, {"exp_avgs", &exp_avgs[i]}, {"exp_avg_sqs", &exp_avg_sqs[i]}};
    for (const auto& [list, array] : others) {
      const std::string name = element_name(list, i);
      check_float32_cpu(kAdamW, name, *array);
      check_same_shape(kAdamW, name.c_str(), *array, param_name.c_str(), params[i]);
    }
  }
  check_written_memory_is_disjoint(params, grads, exp_avgs, exp_avg_sqs);

  if (options.step < 1) throw_value_error(kAdamW, "step", "a step number >= 1", std::to_string(options.step));
  check_range("lr", options.lr, 0.0, true, INFINITY, "a finite learning rate >= 0");
  check_range("beta1", options.beta1, 0.0, true, 1.0, "a value in [0, 1)");
  check_range("beta2", options.beta2, 0.0, true, 1.0, "a value in [0, 1)");
  check_range("eps", options.eps, 0.0, true, INFINITY, "a finite eps >= 0");
  check_range("weight_decay", options.weight_decay, 0.0, true, INFINITY, "a finite weight decay >= 0");

  const double t = static_cast<double>(options.step);
  cpu::optim_kernels::AdamWConstants constants;
  constants.decay = static_cast<float>(1.0 - options.lr * options.weight_decay);
  constants.one_minus_beta1 = static_cast<float>(1.0 - options.beta1);
  constants.beta2 = static_cast<float>(options.beta2);
  constants.one_minus_beta2 = static_cast<float>(1.0 - options.beta2);
  constants.bias_correction2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(options.beta2, t)));
  constants.eps = static_cast<float>(options.eps);
  constants.step_size = static_cast<float>(options.lr / (1.0 - std::pow(options.beta1, t)));

  std::vector<cpu::AdamWTensors> tensors;
  tensors.reserve(n);
  for (std::size_t i = 0; i < n; ++i)
    tensors.push_back({params[i].data<float>(), exp_avgs[i].data<float>(), exp_avg_sqs[i].data<float>(),
                       grads[i].data<float>(), params[i].numel(), decay_mask.empty() || decay_mask[i]});
  cpu::adamw_step(tensors.data(), tensors.size(), constants);
}

double sum_of_squares(const std::vector<Array>& arrays) {
  const std::vector<cpu::FloatSpan> spans = float_spans("sum_of_squares", "arrays", arrays);
  return cpu::sum_of_squares(spans.data(), spans.size());
}

void scale_in_place(const std::vector<Array>& arrays, double factor) {
  const std::vector<cpu::FloatSpan> spans = float_spans("scale_in_place", "arrays", arrays);
  cpu::scale_in_place(spans.data(), spans.size(), static_cast<float>(factor));
}

}  // namespace attnkit::ops
