#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "ops/shape.h"
#include "python/bindings.h"

namespace py = pybind11;

namespace attnkit::python {

void bind_shape(py::module_& m) {
  const auto release_gil = py::call_guard<py::gil_scoped_release>();
  m.def("permute", &ops::permute, py::arg("input"), py::arg("dims"), release_gil);
  m.def("expand", &ops::expand, py::arg("input"), py::arg("shape"), release_gil);
  m.def("split", &ops::split, py::arg("input"), py::arg("sizes"), py::arg("dim"), release_gil);
  m.def("cat", &ops::cat, py::arg("tensors"), py::arg("dim"), release_gil);
  m.def("narrow", &ops::narrow, py::arg("input"), py::arg("dim"), py::arg("start"), py::arg("length"), release_gil);
  m.def("narrow_backward", &ops::narrow_backward, py::arg("grad_output"), py::arg("input_shape"), py::arg("dim"),
        py::arg("start"), release_gil);
  m.def("index_select", &ops::index_select, py::arg("input"), py::arg("dim"), py::arg("index"), release_gil);
  m.def("index_select_backward", &ops::index_select_backward, py::arg("grad_output"), py::arg("input_shape"),
        py::arg("dim"), py::arg("index"), release_gil);
  m.def("gather", &ops::gather, py::arg("input"), py::arg("dim"), py::arg("index"), release_gil);
  m.def("gather_backward", &ops::gather_backward, py::arg("grad_output"), py::arg("input_shape"), py::arg("dim"),
        py::arg("index"), release_gil);
}

}  // namespace attnkit::python
