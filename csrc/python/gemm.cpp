#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>

#include "ops/gemm.h"
#include "python/bindings.h"

namespace py = pybind11;

namespace attnkit::python {

void bind_gemm(py::module_& m) {
  m.def(
      "matmul",
      [](const Array& a, const Array& b, bool transpose_a, bool transpose_b, float alpha, float beta,
         const std::optional<Array>& out, const std::optional<Array>& bias, const std::string& activation,
         bool save_pre_activation) {
        ops::MatmulOptions options;
        options.transpose_a = transpose_a;
        options.transpose_b = transpose_b;
        options.alpha = alpha;
        options.beta = beta;
        options.activation = ops::parse_gemm_activation(activation);
        options.save_pre_activation = save_pre_activation;
        ops::MatmulResult r = ops::matmul(a, b, out.value_or(Array()), bias.value_or(Array()), options);
        return std::make_pair(r.out,
                              r.pre_activation.defined() ? std::optional<Array>(r.pre_activation) : std::nullopt);
      },
      py::arg("a"), py::arg("b"), py::arg("transpose_a") = false, py::arg("transpose_b") = false,
      py::arg("alpha") = 1.0f, py::arg("beta") = 0.0f, py::arg("out") = std::nullopt, py::arg("bias") = std::nullopt,
      py::arg("activation") = "none", py::arg("save_pre_activation") = false, py::call_guard<py::gil_scoped_release>(),
      "activation(alpha * op(a) @ op(b) + beta * out + bias) -> (out, pre_activation or None)");
  m.def("bias_gradient", &ops::bias_gradient, py::arg("grad_output"), py::call_guard<py::gil_scoped_release>());
}

}  // namespace attnkit::python
