#include "ops/moe.h"

#include <algorithm>
#include <string>
#include <vector>

#include "core/errors.h"
#include "cpu/moe.h"
#include "ops/checks.h"

namespace attnkit::ops {
namespace {

std::string expected_shape(std::initializer_list<std::string> sizes) {
  std::string text = "[";
  for (const std::string& size : sizes) text += (text.size() > 1 ? ", " : "") + size;
  return text + "]";
}

void check_array(const char* op, const char* argument, const Array& a, DType dtype, const Shape& shape,
                 const std::string& shape_text) {
  check_defined(op, argument, a);
  check_dtype(op, argument, a, dtype);
  check_cpu(op, argument, a);
  if (a.shape() != shape)
    throw_value_error(op, argument, "shape " + shape_text + " = " + shape_string(shape), shape_string(a.shape()));
}

void check_matrix(const char* op, const char* argument, const Array& a, DType dtype, const char* what) {
  check_defined(op, argument, a);
  check_dtype(op, argument, a, dtype);
  check_cpu(op, argument, a);
  if (a.ndim() != 2) throw_value_error(op, argument, std::string("a 2-d ") + what, shape_string(a.shape()));
}

// Every expert id of experts [N, k] lies in [0, E): the kernels index with them.
void check_expert_ids(const char* op, const Array& experts, std::int64_t E) {
  const std::int32_t* ids = experts.data<std::int32_t>();
  for (std::int64_t i = 0; i < experts.numel(); ++i)
    if (ids[i] < 0 || ids[i] >= E)
      throw_value_error(op, "experts", "expert ids in [0, " + std::to_string(E) + ")",
                        "id " + std::to_string(ids[i]) + " at flat position " + std::to_string(i));
}

cpu::MoeActivation parse_activation(const char* op, const std::string& activation) {
  if (activation == "relu") return cpu::MoeActivation::relu;
  if (activation == "gelu") return cpu::MoeActivation::gelu;
  if (activation == "gelu_tanh") return cpu::MoeActivation::gelu_tanh;
  if (activation == "swiglu") return cpu::MoeActivation::swiglu;
  throw_value_error(op, "activation", "'relu', 'gelu', 'gelu_tanh' or 'swiglu'", "'" + activation + "'");
}

struct FfnSizes {
  std::int64_t N, C, k, E, F, H1, S;
};

// Checks the weights and the grouping (rows, offsets) against x-like [N, C]
// and gates [N, k]. The grouping must be a plan: offsets rise from 0 to S,
// and the kept slots' rows are 0 .. S - 1, each once; so the kernels' every
// grouped read and write stays inside [S, ...] and every grouped row is written.
FfnSizes check_ffn(const char* op, const char* x_name, const Array& x, const Array& gates, const Array& rows,
                   const Array& offsets, const MoeExpertWeights& w, cpu::MoeActivation activation) {
  check_matrix(op, x_name, x, DType::float32, "[tokens, d_model] array");
  check_matrix(op, "gates", gates, DType::float32, "[tokens, top_k] array");
  FfnSizes s{};
  s.N = x.dim(0);
  s.C = x.dim(1);
  s.k = gates.dim(1);
  if (gates.dim(0) != s.N)
    throw_value_error(op, "gates", "one row per token of '" + std::string(x_name) + "', " + std::to_string(s.N),
                      shape_string(gates.shape()));
  check_defined(op, "fc2_weight", w.fc2_weight);
  check_dtype(op, "fc2_weight", w.fc2_weight, DType::float32);
  check_cpu(op, "fc2_weight", w.fc2_weight);
  if (w.fc2_weight.ndim() != 3 || w.fc2_weight.dim(1) != s.C)
    throw_value_error(op, "fc2_weight", "a 3-d [n_experts, d_model=" + std::to_string(s.C) + ", d_ff] array",
                      shape_string(w.fc2_weight.shape()));
  s.E = w.fc2_weight.dim(0);
  s.F = w.fc2_weight.dim(2);
  if (s.E < 1) throw_value_error(op, "fc2_weight", "at least one expert", shape_string(w.fc2_weight.shape()));
  s.H1 = activation == cpu::MoeActivation::swiglu ? checked_multiply(2, s.F, op, "fc2_weight") : s.F;
  check_array(op, "fc1_weight", w.fc1_weight, DType::float32, {s.E, s.H1, s.C},
              expected_shape({"n_experts", activation == cpu::MoeActivation::swiglu ? "2 d_ff" : "d_ff", "d_model"}));
  if (w.fc1_bias.defined())
    check_array(op, "fc1_bias", w.fc1_bias, DType::float32, {s.E, s.H1}, expected_shape({"n_experts", "fc1's width"}));
  if (w.fc2_bias.defined())
    check_array(op, "fc2_bias", w.fc2_bias, DType::float32, {s.E, s.C}, expected_shape({"n_experts", "d_model"}));
  check_array(op, "rows", rows, DType::int64, {s.N, s.k}, expected_shape({"tokens", "top_k"}));
  check_array(op, "offsets", offsets, DType::int64, {s.E + 1}, expected_shape({"n_experts + 1"}));
  const std::int64_t* offset = offsets.data<std::int64_t>();
  if (offset[0] != 0) throw_value_error(op, "offsets", "offsets[0] = 0", std::to_string(offset[0]));
  for (std::int64_t e = 0; e < s.E; ++e)
    if (offset[e + 1] < offset[e])
      throw_value_error(op, "offsets", "non-decreasing offsets",
                        std::to_string(offset[e + 1]) + " after " + std::to_string(offset[e]));
  s.S = offset[s.E];
  const std::int64_t* row = rows.data<std::int64_t>();
  std::vector<char> seen(static_cast<std::size_t>(std::min(s.S, rows.numel())), 0);
  std::int64_t kept = 0;
  for (std::int64_t i = 0; i < rows.numel(); ++i) {
    if (row[i] == -1) continue;
    if (row[i] < 0 || row[i] >= s.S || row[i] >= rows.numel() || seen[row[i]])
      throw_value_error(op, "rows", "-1 or a grouped row in [0, " + std::to_string(s.S) + ") used once",
                        std::to_string(row[i]) + " at flat position " + std::to_string(i));
    seen[row[i]] = 1;
    ++kept;
  }
  if (kept != s.S)
    throw_value_error(op, "offsets", "as many grouped rows as kept slots in 'rows', " + std::to_string(kept),
                      std::to_string(s.S));
  return s;
}

cpu::MoeExperts experts_of(const MoeExpertWeights& w, const FfnSizes& s, cpu::MoeActivation activation) {
  return {w.fc1_weight.data<float>(),
          w.fc1_bias.defined() ? w.fc1_bias.data<float>() : nullptr,
          w.fc2_weight.data<float>(),
          w.fc2_bias.defined() ? w.fc2_bias.data<float>() : nullptr,
          s.E,
          s.C,
          s.F,
          activation};
}

cpu::MoeGroupedBuffers buffers_of(const MoeSaved& saved) {
  return {saved.grouped_x.data<float>(), saved.hidden_pre.data<float>(), saved.hidden.data<float>(),
          saved.expert_outputs.data<float>()};
}

}  // namespace

MoeRouting moe_route(const Array& probs, std::int64_t top_k, bool renormalize) {
  check_matrix("moe_route", "probs", probs, DType::float32, "[tokens, n_experts] array");
  const std::int64_t N = probs.dim(0), E = probs.dim(1);
  if (top_k < 1 || top_k > E)
    throw_value_error("moe_route", "top_k", "an int in [1, n_experts=" + std::to_string(E) + "]",
                      std::to_string(top_k));
  MoeRouting out{Array::empty({N, top_k}, DType::int32), Array::empty({N, top_k}, DType::float32)};
  cpu::moe_route(out.experts.data<std::int32_t>(), out.gates.data<float>(), probs.data<float>(), N, E, top_k,
                 renormalize);
  return out;
}

Array moe_route_backward(const Array& grad_gates, const Array& probs, const Array& experts, const Array& gates,
                         bool renormalize) {
  const char* op = "moe_route_backward";
  check_matrix(op, "probs", probs, DType::float32, "[tokens, n_experts] array");
  check_matrix(op, "experts", experts, DType::int32, "[tokens, top_k] array");
  const std::int64_t N = probs.dim(0), E = probs.dim(1), k = experts.dim(1);
  const std::string shape = expected_shape({"tokens", "top_k"});
  check_array(op, "experts", experts, DType::int32, {N, k}, shape);
  check_array(op, "gates", gates, DType::float32, {N, k}, shape);
  check_array(op, "grad_gates", grad_gates, DType::float32, {N, k}, shape);
  check_expert_ids(op, experts, E);
  Array dprobs = Array::empty({N, E}, DType::float32);
  cpu::moe_route_backward(dprobs.data<float>(), grad_gates.data<float>(), probs.data<float>(),
                          experts.data<std::int32_t>(), gates.data<float>(), N, E, k, renormalize);
  return dprobs;
}

MoePlan moe_plan(const Array& experts, std::int64_t n_experts, std::int64_t capacity) {
  check_matrix("moe_plan", "experts", experts, DType::int32, "[tokens, top_k] array");
  if (n_experts < 1) throw_value_error("moe_plan", "n_experts", "an int >= 1", std::to_string(n_experts));
  check_expert_ids("moe_plan", experts, n_experts);
  const std::int64_t N = experts.dim(0), k = experts.dim(1);
  MoePlan plan{Array::empty({N, k}, DType::int64), Array::empty({n_experts + 1}, DType::int64),
               Array::empty({n_experts}, DType::int64)};
  cpu::moe_plan(plan.rows.data<std::int64_t>(), plan.offsets.data<std::int64_t>(), plan.load.data<std::int64_t>(),
                experts.data<std::int32_t>(), N, n_experts, k, capacity);
  return plan;
}

MoeForward moe_ffn_forward(const Array& x, const Array& gates, const Array& rows, const Array& offsets,
                           const MoeExpertWeights& weights, const std::string& activation) {
  const char* op = "moe_ffn";
  const cpu::MoeActivation kind = parse_activation(op, activation);
  const FfnSizes s = check_ffn(op, "x", x, gates, rows, offsets, weights, kind);
  MoeForward out;
  out.y = Array::empty({s.N, s.C}, DType::float32);
  out.saved = {Array::empty({s.S, s.C}, DType::float32), Array::empty({s.S, s.H1}, DType::float32),
               Array::empty({s.S, s.F}, DType::float32), Array::empty({s.S, s.C}, DType::float32)};
  cpu::moe_ffn_forward(out.y.data<float>(), buffers_of(out.saved), x.data<float>(), gates.data<float>(),
                       rows.data<std::int64_t>(), offsets.data<std::int64_t>(), experts_of(weights, s, kind), s.N, s.k);
  return out;
}

MoeGradients moe_ffn_backward(const Array& dy, const Array& gates, const Array& rows, const Array& offsets,
                              const MoeExpertWeights& weights, const MoeSaved& saved, const std::string& activation) {
  const char* op = "moe_ffn_backward";
  const cpu::MoeActivation kind = parse_activation(op, activation);
  const FfnSizes s = check_ffn(op, "grad_output", dy, gates, rows, offsets, weights, kind);
  check_array(op, "grouped_x", saved.grouped_x, DType::float32, {s.S, s.C}, expected_shape({"S", "d_model"}));
  check_array(op, "hidden_pre", saved.hidden_pre, DType::float32, {s.S, s.H1}, expected_shape({"S", "fc1's width"}));
  check_array(op, "hidden", saved.hidden, DType::float32, {s.S, s.F}, expected_shape({"S", "d_ff"}));
  check_array(op, "expert_outputs", saved.expert_outputs, DType::float32, {s.S, s.C}, expected_shape({"S", "d_model"}));
  MoeGradients g;
  g.dx = Array::empty({s.N, s.C}, DType::float32);
  g.dgates = Array::empty({s.N, s.k}, DType::float32);
  g.dweights.fc1_weight = Array::empty({s.E, s.H1, s.C}, DType::float32);
  g.dweights.fc2_weight = Array::empty({s.E, s.C, s.F}, DType::float32);
  if (weights.fc1_bias.defined()) g.dweights.fc1_bias = Array::empty({s.E, s.H1}, DType::float32);
  if (weights.fc2_bias.defined()) g.dweights.fc2_bias = Array::empty({s.E, s.C}, DType::float32);
  const cpu::MoeExpertGradients grads{
      g.dweights.fc1_weight.data<float>(),
      g.dweights.fc1_bias.defined() ? g.dweights.fc1_bias.data<float>() : nullptr,
      g.dweights.fc2_weight.data<float>(),
      g.dweights.fc2_bias.defined() ? g.dweights.fc2_bias.data<float>() : nullptr,
  };
  cpu::moe_ffn_backward(g.dx.data<float>(), g.dgates.data<float>(), grads, dy.data<float>(), gates.data<float>(),
                        rows.data<std::int64_t>(), offsets.data<std::int64_t>(), experts_of(weights, s, kind),
                        buffers_of(saved), s.N, s.k);
  return g;
}

}  // namespace attnkit::ops
