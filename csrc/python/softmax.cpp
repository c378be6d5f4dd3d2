#include <pybind11/pybind11.h>

#include "ops/softmax.h"
#include "python/bindings.h"

namespace py = pybind11;

namespace attnkit::python {

void bind_softmax(py::module_& m) {
  m.def("softmax_forward", &ops::softmax_forward, py::arg("x"), py::arg("scale"), py::arg("log"),
        py::call_guard<py::gil_scoped_release>());
  m.def("softmax_backward", &ops::softmax_backward, py::arg("grad_output"), py::arg("y"), py::arg("scale"),
        py::arg("log"), py::call_guard<py::gil_scoped_release>());
}

}  // namespace attnkit::python
