#include <pybind11/pybind11.h>

#include "ops/embedding.h"
#include "python/bindings.h"

namespace py = pybind11;

namespace attnkit::python {

void bind_embedding(py::module_& m) {
  m.def("embedding_forward", &ops::embedding_forward, py::arg("indices"), py::arg("weight"),
        py::call_guard<py::gil_scoped_release>());
  m.def("embedding_backward", &ops::embedding_backward, py::arg("grad_output"), py::arg("indices"),
        py::arg("num_embeddings"), py::call_guard<py::gil_scoped_release>());
}

}  // namespace attnkit::python
