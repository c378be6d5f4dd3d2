#include <pybind11/pybind11.h>

#include "ops/activation.h"
#include "python/bindings.h"

namespace py = pybind11;

namespace attnkit::python {

void bind_activation(py::module_& m) {
  const auto release_gil = py::call_guard<py::gil_scoped_release>();
  m.def(
      "gelu_forward",
      [](const Array& x, const std::string& approximate) {
        return ops::gelu_forward(x, ops::parse_gelu_approximation(approximate));
      },
      py::arg("x"), py::arg("approximate"), release_gil);
  m.def(
      "gelu_backward",
      [](const Array& grad_output, const Array& x, const std::string& approximate) {
        return ops::gelu_backward(grad_output, x, ops::parse_gelu_approximation(approximate));
      },
      py::arg("grad_output"), py::arg("x"), py::arg("approximate"), release_gil);
  m.def("relu_forward", &ops::relu_forward, py::arg("x"), release_gil);
  m.def("relu_backward", &ops::relu_backward, py::arg("grad_output"), py::arg("x"), release_gil);
  m.def("silu_forward", &ops::silu_forward, py::arg("x"), release_gil);
  m.def("silu_backward", &ops::silu_backward, py::arg("grad_output"), py::arg("x"), release_gil);
  m.def("tanh_forward", &ops::tanh_forward, py::arg("x"), release_gil);
  m.def("tanh_backward", &ops::tanh_backward, py::arg("grad_output"), py::arg("x"), release_gil);
  m.def("swiglu_forward", &ops::swiglu_forward, py::arg("x"), release_gil);
  m.def("swiglu_backward", &ops::swiglu_backward, py::arg("grad_output"), py::arg("x"), release_gil);
}

}  // namespace attnkit::python
