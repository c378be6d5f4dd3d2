#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <tuple>

#include "ops/norm.h"
#include "python/bindings.h"

namespace py = pybind11;

namespace attnkit::python {
namespace {

std::tuple<Array, OptionalArray, OptionalArray> gradients_tuple(const ops::NormGradients& g) {
  return {g.dx, or_none(g.dweight), or_none(g.dbias)};
}

}  // namespace

void bind_norm(py::module_& m) {
  m.def(
      "layer_norm_forward",
      [](const Array& x, const Shape& normalized_shape, const OptionalArray& weight, const OptionalArray& bias,
         double eps) {
        ops::LayerNormOutputs out =
            ops::layer_norm_forward(x, normalized_shape, or_undefined(weight), or_undefined(bias), eps);
        return std::make_tuple(out.y, out.mean, out.rstd);
      },
      py::arg("x"), py::arg("normalized_shape"), py::arg("weight"), py::arg("bias"), py::arg("eps"),
      py::call_guard<py::gil_scoped_release>());
  m.def(
      "layer_norm_backward",
      [](const Array& grad_output, const Array& x, const OptionalArray& weight, const Array& mean, const Array& rstd,
         double eps, bool weight_grad, bool bias_grad) {
        return gradients_tuple(
            ops::layer_norm_backward(grad_output, x, or_undefined(weight), mean, rstd, eps, weight_grad, bias_grad));
      },
      py::arg("grad_output"), py::arg("x"), py::arg("weight"), py::arg("mean"), py::arg("rstd"), py::arg("eps"),
      py::arg("weight_grad"), py::arg("bias_grad"), py::call_guard<py::gil_scoped_release>());
  m.def(
      "add_layer_norm_forward",
      [](const Array& x, const Array& residual, const Shape& normalized_shape, const OptionalArray& weight,
         const OptionalArray& bias, double eps) {
        ops::AddLayerNormOutputs out =
            ops::add_layer_norm_forward(x, residual, normalized_shape, or_undefined(weight), or_undefined(bias), eps);
        return std::make_tuple(out.sum, out.y, out.mean, out.rstd);
      },
      py::arg("x"), py::arg("residual"), py::arg("normalized_shape"), py::arg("weight"), py::arg("bias"),
      py::arg("eps"), py::call_guard<py::gil_scoped_release>());
  m.def(
      "add_layer_norm_backward",
      [](const Array& grad_sum, const Array& grad_output, const Array& sum, const OptionalArray& weight,
         const Array& mean, const Array& rstd, double eps, bool weight_grad, bool bias_grad) {
        return gradients_tuple(ops::add_layer_norm_backward(grad_sum, grad_output, sum, or_undefined(weight), mean,
                                                            rstd, eps, weight_grad, bias_grad));
      },
      py::arg("grad_sum"), py::arg("grad_output"), py::arg("sum"), py::arg("weight"), py::arg("mean"), py::arg("rstd"),
      py::arg("eps"), py::arg("weight_grad"), py::arg("bias_grad"), py::call_guard<py::gil_scoped_release>());
  m.def(
      "rms_norm_forward",
      [](const Array& x, const Shape& normalized_shape, const OptionalArray& weight, double eps) {
        ops::RmsNormOutputs out = ops::rms_norm_forward(x, normalized_shape, or_undefined(weight), eps);
        return std::make_tuple(out.y, out.rstd);
      },
      py::arg("x"), py::arg("normalized_shape"), py::arg("weight"), py::arg("eps"),
      py::call_guard<py::gil_scoped_release>());
  m.def(
      "rms_norm_backward",
      [](const Array& grad_output, const Array& x, const OptionalArray& weight, const Array& rstd, double eps,
         bool weight_grad) {
        ops::NormGradients g = ops::rms_norm_backward(grad_output, x, or_undefined(weight), rstd, eps, weight_grad);
        return std::make_tuple(g.dx, or_none(g.dweight));
      },
      py::arg("grad_output"), py::arg("x"), py::arg("weight"), py::arg("rstd"), py::arg("eps"), py::arg("weight_grad"),
      py::call_guard<py::gil_scoped_release>());
}

}  // namespace attnkit::python
