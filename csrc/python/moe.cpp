#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <tuple>

#include "ops/moe.h"
#include "python/bindings.h"

namespace py = pybind11;

namespace attnkit::python {
namespace {

ops::MoeExpertWeights weights_of(const Array& fc1_weight, const OptionalArray& fc1_bias, const Array& fc2_weight,
                                 const OptionalArray& fc2_bias) {
  return {fc1_weight, or_undefined(fc1_bias), fc2_weight, or_undefined(fc2_bias)};
}

}  // namespace

void bind_moe(py::module_& m) {
  m.def(
      "moe_route",
      [](const Array& probs, std::int64_t top_k, bool renormalize) {
        ops::MoeRouting out = ops::moe_route(probs, top_k, renormalize);
        return std::make_tuple(out.experts, out.gates);
      },
      py::arg("probs"), py::arg("top_k"), py::arg("renormalize"), py::call_guard<py::gil_scoped_release>());
  m.def("moe_route_backward", &ops::moe_route_backward, py::arg("grad_gates"), py::arg("probs"), py::arg("experts"),
        py::arg("gates"), py::arg("renormalize"), py::call_guard<py::gil_scoped_release>());
  m.def(
      "moe_plan",
      [](const Array& experts, std::int64_t n_experts, std::int64_t capacity) {
        ops::MoePlan plan = ops::moe_plan(experts, n_experts, capacity);
        return std::make_tuple(plan.rows, plan.offsets, plan.load);
      },
      py::arg("experts"), py::arg("n_experts"), py::arg("capacity"), py::call_guard<py::gil_scoped_release>());
  // Returns (y, saved): saved = (grouped_x, hidden_pre, hidden, expert_outputs) for moe_ffn_backward.
  m.def(
      "moe_ffn_forward",
      [](const Array& x, const Array& gates, const Array& rows, const Array& offsets, const Array& fc1_weight,
         const OptionalArray& fc1_bias, const Array& fc2_weight, const OptionalArray& fc2_bias,
         const std::string& activation) {
        ops::MoeForward out = ops::moe_ffn_forward(x, gates, rows, offsets,
                                                   weights_of(fc1_weight, fc1_bias, fc2_weight, fc2_bias), activation);
        const ops::MoeSaved& s = out.saved;
        return std::make_tuple(out.y, std::make_tuple(s.grouped_x, s.hidden_pre, s.hidden, s.expert_outputs));
      },
      py::arg("x"), py::arg("gates"), py::arg("rows"), py::arg("offsets"), py::arg("fc1_weight"), py::arg("fc1_bias"),
      py::arg("fc2_weight"), py::arg("fc2_bias"), py::arg("activation"), py::call_guard<py::gil_scoped_release>());
  // Returns (dx, dgates, dfc1_weight, dfc1_bias, dfc2_weight, dfc2_bias); a bias's gradient is None without the bias.
  m.def(
      "moe_ffn_backward",
      [](const Array& grad_output, const Array& gates, const Array& rows, const Array& offsets, const Array& fc1_weight,
         const OptionalArray& fc1_bias, const Array& fc2_weight, const OptionalArray& fc2_bias,
         const std::tuple<Array, Array, Array, Array>& saved, const std::string& activation) {
        const ops::MoeSaved s{std::get<0>(saved), std::get<1>(saved), std::get<2>(saved), std::get<3>(saved)};
        ops::MoeGradients g = ops::moe_ffn_backward(
            grad_output, gates, rows, offsets, weights_of(fc1_weight, fc1_bias, fc2_weight, fc2_bias), s, activation);
        return std::make_tuple(g.dx, g.dgates, g.dweights.fc1_weight, or_none(g.dweights.fc1_bias),
                               g.dweights.fc2_weight, or_none(g.dweights.fc2_bias));
      },
      py::arg("grad_output"), py::arg("gates"), py::arg("rows"), py::arg("offsets"), py::arg("fc1_weight"),
      py::arg("fc1_bias"), py::arg("fc2_weight"), py::arg("fc2_bias"), py::arg("saved"), py::arg("activation"),
      py::call_guard<py::gil_scoped_release>());
}

}  // namespace attnkit::python
