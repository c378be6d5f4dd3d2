#include <pybind11/pybind11.h>

#include "ops/patch.h"
#include "python/bindings.h"

namespace py = pybind11;

namespace attnkit::python {

void bind_patch(py::module_& m) {
  m.def("patchify", &ops::patchify, py::arg("images"), py::arg("patch_size"), py::call_guard<py::gil_scoped_release>());
  m.def("unpatchify", &ops::unpatchify, py::arg("patches"), py::arg("channels"), py::arg("height"), py::arg("width"),
        py::arg("patch_size"), py::call_guard<py::gil_scoped_release>());
}

}  // namespace attnkit::python
