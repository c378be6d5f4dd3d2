#include <pybind11/pybind11.h>

#include "ops/position.h"
#include "python/bindings.h"

namespace py = pybind11;

namespace attnkit::python {

void bind_position(py::module_& m) {
  m.def("sinusoidal_position_encoding", &ops::sinusoidal_position_encoding, py::arg("length"), py::arg("dim"),
        py::arg("offset"), py::call_guard<py::gil_scoped_release>());
  m.def("rope_forward", &ops::rope_forward, py::arg("x"), py::arg("offset"), py::arg("base"), py::arg("interleaved"),
        py::call_guard<py::gil_scoped_release>());
  m.def("rope_backward", &ops::rope_backward, py::arg("grad_output"), py::arg("offset"), py::arg("base"),
        py::arg("interleaved"), py::call_guard<py::gil_scoped_release>());
}

}  // namespace attnkit::python
