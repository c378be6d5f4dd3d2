#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "ops/random.h"
#include "python/bindings.h"

namespace py = pybind11;

namespace attnkit::python {

void bind_random(py::module_& m) {
  m.def("philox4x32_10", &ops::philox4x32_10, py::arg("counter"), py::arg("key"),
        "One Philox 4x32-10 block: four uint32 words from a counter of four and a key of two.",
        py::call_guard<py::gil_scoped_release>());
  m.def("random_bits", &ops::random_bits, py::arg("n"), py::arg("seed"), py::arg("offset"),
        py::call_guard<py::gil_scoped_release>());
  m.def("uniform", &ops::uniform, py::arg("shape"), py::arg("seed"), py::arg("offset"),
        py::call_guard<py::gil_scoped_release>());
  m.def("dropout_forward", &ops::dropout_forward, py::arg("x"), py::arg("p"), py::arg("seed"), py::arg("offset"),
        py::call_guard<py::gil_scoped_release>());
  m.def("dropout_backward", &ops::dropout_backward, py::arg("grad_output"), py::arg("p"), py::arg("seed"),
        py::arg("offset"), py::call_guard<py::gil_scoped_release>());
}

}  // namespace attnkit::python
