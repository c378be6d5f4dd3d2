#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "ops/optim.h"
#include "python/bindings.h"

namespace py = pybind11;

namespace attnkit::python {

void bind_optim(py::module_& m) {
  m.def(
      "adamw_step",
      [](const std::vector<Array>& params, const std::vector<Array>& grads, const std::vector<Array>& exp_avgs,
         const std::vector<Array>& exp_avg_sqs, const std::vector<bool>& decay_mask, std::int64_t step, double lr,
         double beta1, double beta2, double eps, double weight_decay) {
        ops::adamw_step(params, grads, exp_avgs, exp_avg_sqs, decay_mask,
                        ops::AdamWOptions{step, lr, beta1, beta2, eps, weight_decay});
      },
      py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"), py::arg("decay_mask"),
      py::arg("step"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"),
      py::call_guard<py::gil_scoped_release>());
  m.def("sum_of_squares", &ops::sum_of_squares, py::arg("arrays"), py::call_guard<py::gil_scoped_release>());
  m.def("scale_in_place", &ops::scale_in_place, py::arg("arrays"), py::arg("factor"),
        py::call_guard<py::gil_scoped_release>());
}

}  // namespace attnkit::python
