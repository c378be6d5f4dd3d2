#include <pybind11/pybind11.h>

#include "ops/activation.h"
#include "python/bindings.h"

namespace py = pybind11;

namespace attnkit::python {

void bind_activation(py::module_& m) {
  m.def(
      "gelu_forward",
      [](const Array& x, const std::string& approximate) {
        return ops::gelu_forward(x, ops::parse_gelu_approximation(approximate));
      },
      py::arg("x"), py::arg("approximate"), py::call_guard<py::gil_scoped_release>());
  m.def(
      "gelu_backward",
      [](const Array& grad_output, const Array& x, const std::string& approximate) {
        return ops::gelu_backward(grad_output, x, ops::parse_gelu_approximation(approximate));
      },
      py::arg("grad_output"), py::arg("x"), py::arg("approximate"),
      py::call_guard<py::gil_scoped_release>());
}

}  // namespace attnkit::python
