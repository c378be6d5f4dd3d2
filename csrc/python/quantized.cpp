#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>

#include "cpu/quantized.h"
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
        return std::make_pair(r.out, or_none(r.pre_activation));
      },
      py::arg("x"), py::arg("weight"), py::arg("scales"), py::arg("bias") = std::nullopt,
      py::arg("activation") = "none", py::arg("save_pre_activation") = false, py::call_guard<py::gil_scoped_release>(),
      "activation(x @ (scales[:, None] * weight).T + bias) for an int8 weight -> (out, pre_activation or None)");
  m.def("pack_int8_dynamic", &ops::pack_int8_dynamic, py::arg("weight"), py::call_guard<py::gil_scoped_release>(),
        "the int8 weight packed for dynamic quantization -> (packed, row_sums)");
  m.def(
      "linear_int8_dynamic",
      [](const Array& x, const Array& packed, const Array& row_sums, const Array& scales,
         const std::optional<Array>& bias, const std::string& activation, bool save_pre_activation) {
        ops::MatmulResult r = ops::linear_int8_dynamic(x, packed, row_sums, scales, bias.value_or(Array()),
                                                       ops::parse_gemm_activation(activation), save_pre_activation);
        return std::make_pair(r.out, or_none(r.pre_activation));
      },
      py::arg("x"), py::arg("packed"), py::arg("row_sums"), py::arg("scales"), py::arg("bias") = std::nullopt,
      py::arg("activation") = "none", py::arg("save_pre_activation") = false, py::call_guard<py::gil_scoped_release>(),
      "linear_int8 with x quantized per row on the fly (int8 dot products, AVX512-VNNI)");
  m.def("int8_dynamic_available", &cpu::int8_dynamic_available,
        "whether the CPU tier in use has the int8 dot products of dynamic quantization");
  m.def("dequantize_int8", &ops::dequantize_int8, py::arg("weight"), py::arg("scales"),
        py::call_guard<py::gil_scoped_release>(), "scales[:, None] * weight as float32");
}

}  // namespace attnkit::python
