#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>

#include "ops/sampling.h"
#include "python/bindings.h"

namespace py = pybind11;

namespace attnkit::python {

void bind_sampling(py::module_& m) {
  m.def(
      "sample_tokens",
      [](const Array& logits, const std::optional<Array>& seen, double temperature, std::int64_t top_k, double top_p,
         double repetition_penalty, std::uint64_t seed, std::uint64_t offset) {
        ops::SamplingOptions o;
        o.temperature = temperature;
        o.top_k = top_k;
        o.top_p = top_p;
        o.repetition_penalty = repetition_penalty;
        return ops::sample_tokens(logits, seen.value_or(Array()), o, seed, offset);
      },
      py::arg("logits"), py::arg("seen") = std::nullopt, py::arg("temperature") = 1.0, py::arg("top_k") = 0,
      py::arg("top_p") = 1.0, py::arg("repetition_penalty") = 1.0, py::arg("seed") = 0, py::arg("offset") = 0,
      py::call_guard<py::gil_scoped_release>(),
      "int64 [B]: the next token of each row of logits [B, V] (temperature 0: greedy)");
}

}  // namespace attnkit::python
