#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>

#include "ops/quantized.h"
#include "python/bindings.h"

namespace py = pybind11;

namespace attnkit::python {

void bind_quantized(py::module_& m) {
  m.def(
      "linear_int8",
      [](const Array& x, const Array& weight, const Array& scales, const std::optional<Array>& bias,
         const std::string& activation, bool save_pre_activation) {
        ops::MatmulResult r = ops::linear_int8(x, weight, scales, bias.value_or(Array()),
                                               ops::parse_gemm_activation(activation), save_pre_activation);
        return std::make_pair(r.out,
                              r.pre_activation.defined() ? std::optional<Array>(r.pre_activation) : std::nullopt);
      },
      py::arg("x"), py::arg("weight"), py::arg("scales"), py::arg("bias") = std::nullopt,
      py::arg("activation") = "none", py::arg("save_pre_activation") = false, py::call_guard<py::gil_scoped_release>(),
      "activation(x @ (scales[:, None] * weight).T + bias) for an int8 weight -> (out, pre_activation or None)");
  m.def("dequantize_int8", &ops::dequantize_int8, py::arg("weight"), py::arg("scales"),
        py::call_guard<py::gil_scoped_release>(), "scales[:, None] * weight as float32");
}

}  // namespace attnkit::python
