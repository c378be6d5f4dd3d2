#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <tuple>

#include "ops/loss.h"
#include "python/bindings.h"

namespace py = pybind11;

namespace attnkit::python {

void bind_loss(py::module_& m) {
  m.def(
      "cross_entropy_forward",
      [](const Array& logits, const Array& targets, std::int64_t ignore_index, double label_smoothing,
         const std::string& reduction) {
        ops::CrossEntropyOutputs out = ops::cross_entropy_forward(logits, targets, ignore_index, label_smoothing,
                                                                  ops::parse_loss_reduction(reduction));
        return std::make_tuple(out.loss, out.statistics);
      },
      py::arg("logits"), py::arg("targets"), py::arg("ignore_index"), py::arg("label_smoothing"), py::arg("reduction"),
      py::call_guard<py::gil_scoped_release>());
  m.def(
      "cross_entropy_backward",
      [](const Array& grad_output, const Array& logits, const Array& targets, const Array& statistics,
         std::int64_t ignore_index, double label_smoothing, const std::string& reduction) {
        return ops::cross_entropy_backward(grad_output, logits, targets, statistics, ignore_index, label_smoothing,
                                           ops::parse_loss_reduction(reduction));
      },
      py::arg("grad_output"), py::arg("logits"), py::arg("targets"), py::arg("statistics"), py::arg("ignore_index"),
      py::arg("label_smoothing"), py::arg("reduction"), py::call_guard<py::gil_scoped_release>());
}

}  // namespace attnkit::python
