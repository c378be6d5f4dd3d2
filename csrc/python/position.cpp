#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <vector>

#include "ops/position.h"
#include "python/bindings.h"

namespace py = pybind11;

namespace attnkit::python {

void bind_position(py::module_& m) {
  m.def("sinusoidal_position_encoding", &ops::sinusoidal_position_encoding, py::arg("length"), py::arg("dim"),
        py::arg("offset"), py::call_guard<py::gil_scoped_release>());
  m.def(
      "rope_forward",
      [](const Array& x, std::int64_t offset, double base, bool interleaved, const std::optional<Array>& positions,
         const std::vector<double>& frequencies) {
        return ops::rope_forward(x, offset, base, interleaved, positions.value_or(Array()), frequencies);
      },
      py::arg("x"), py::arg("offset"), py::arg("base"), py::arg("interleaved"), py::arg("positions") = std::nullopt,
      py::arg("frequencies") = std::vector<double>(), py::call_guard<py::gil_scoped_release>());
  m.def(
      "rope_backward",
      [](const Array& grad_output, std::int64_t offset, double base, bool interleaved,
         const std::optional<Array>& positions, const std::vector<double>& frequencies) {
        return ops::rope_backward(grad_output, offset, base, interleaved, positions.value_or(Array()), frequencies);
      },
      py::arg("grad_output"), py::arg("offset"), py::arg("base"), py::arg("interleaved"),
      py::arg("positions") = std::nullopt, py::arg("frequencies") = std::vector<double>(),
      py::call_guard<py::gil_scoped_release>());
}

}  // namespace attnkit::python
