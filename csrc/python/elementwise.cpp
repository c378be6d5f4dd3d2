#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>

#include "core/errors.h"
#include "ops/elementwise.h"
#include "python/bindings.h"

namespace py = pybind11;

namespace attnkit::python {
namespace {

std::pair<OptionalArray, OptionalArray> optional_pair(const std::pair<Array, Array>& p) {
  return {or_none(p.first), or_none(p.second)};
}

// Python ints go to the integer fill and range kernels whole (a double
// would round ids beyond 2^53); bool counts as an int.
bool is_python_integer(const py::handle& value) {
  return py::isinstance<py::int_>(value) || py::isinstance<py::bool_>(value);
}

std::int64_t to_int64(const char* op, const char* argument, const py::handle& value) {
  try {
    return value.cast<std::int64_t>();
  } catch (const py::cast_error&) {
    throw_value_error(op, argument, "an integer in the int64 range", std::string(py::str(value)));
  }
}

}  // namespace

void bind_elementwise(py::module_& m) {
  const auto release_gil = py::call_guard<py::gil_scoped_release>();
  m.def(
      "binary",
      [](const Array& a, const Array& b, const std::string& op) { return ops::binary(a, b, ops::parse_binary_op(op)); },
      py::arg("input"), py::arg("other"), py::arg("op"), release_gil,
      "input op other with numpy broadcasting; op is 'add', 'sub', 'mul' or 'div'.");
  m.def(
      "binary_scalar",
      [](const Array& a, double scalar, bool scalar_first, const std::string& op) {
        return ops::binary_scalar(a, scalar, scalar_first, ops::parse_binary_op(op));
      },
      py::arg("input"), py::arg("scalar"), py::arg("scalar_first"), py::arg("op"), release_gil);
  m.def("negative", &ops::negative, py::arg("input"), release_gil);
  m.def("add_in_place", &ops::add_in_place, py::arg("target"), py::arg("source"), release_gil);
  m.def(
      "binary_backward",
      [](const Array& grad_output, const Array& a, const Array& b, const std::string& op, bool need_a, bool need_b) {
        return optional_pair(ops::binary_backward(grad_output, a, b, ops::parse_binary_op(op), need_a, need_b));
      },
      py::arg("grad_output"), py::arg("input"), py::arg("other"), py::arg("op"), py::arg("need_input"),
      py::arg("need_other"), release_gil, "mul or div: (grad_input or None, grad_other or None)");
  m.def("scalar_divide_backward", &ops::scalar_divide_backward, py::arg("grad_output"), py::arg("input"),
        py::arg("scalar"), release_gil, "The gradient of scalar / input.");

  m.def("sum", &ops::sum, py::arg("input"), py::arg("dims"), py::arg("keepdim"), release_gil);
  m.def("mean", &ops::mean, py::arg("input"), py::arg("dims"), py::arg("keepdim"), release_gil);
  m.def("sum_to_shape", &ops::sum_to_shape, py::arg("input"), py::arg("shape"), release_gil);
  m.def("max_last_dim", &ops::max_last_dim, py::arg("input"), release_gil, "(values, int64 indices)");

  m.def(
      "compare",
      [](const Array& a, const Array& b, const std::string& op) {
        return ops::compare(a, b, ops::parse_compare_op(op));
      },
      py::arg("input"), py::arg("other"), py::arg("op"), release_gil);
  m.def("where", &ops::where, py::arg("condition"), py::arg("input"), py::arg("other"), release_gil);
  m.def(
      "where_backward",
      [](const Array& grad_output, const Array& condition, const Shape& a_shape, const Shape& b_shape, bool need_a,
         bool need_b) {
        return optional_pair(ops::where_backward(grad_output, condition, a_shape, b_shape, need_a, need_b));
      },
      py::arg("grad_output"), py::arg("condition"), py::arg("input_shape"), py::arg("other_shape"),
      py::arg("need_input"), py::arg("need_other"), release_gil);
  m.def("masked_fill", &ops::masked_fill, py::arg("input"), py::arg("mask"), py::arg("value"), release_gil);

  m.def(
      "cast", [](const Array& x, const std::string& dtype) { return ops::cast(x, dtype_from_name(dtype)); },
      py::arg("input"), py::arg("dtype"), release_gil);
  m.def(
      "fill_",
      [](const Array& x, const py::object& value) {
        if (is_python_integer(value)) {
          const std::int64_t integer = to_int64("fill_", "value", value);
          py::gil_scoped_release release;
          ops::fill_integer(x, integer);
        } else {
          const double real = value.cast<double>();
          py::gil_scoped_release release;
          ops::fill(x, real);
        }
      },
      py::arg("self"), py::arg("value"), "Sets every element to value, in place.");
  m.def(
      "arange",
      [](const py::object& start, const py::object& step, std::int64_t count, const std::string& dtype) {
        const DType type = dtype_from_name(dtype);
        if (type == DType::float32) {
          const double first = start.cast<double>(), increment = step.cast<double>();
          py::gil_scoped_release release;
          return ops::arange(first, increment, count);
        }
        if (!is_python_integer(start) || !is_python_integer(step))
          throw_type_error("arange", "start", "Python ints for an integer dtype",
                           std::string(py::str(start)) + " and step " + std::string(py::str(step)));
        const std::int64_t first = to_int64("arange", "start", start), increment = to_int64("arange", "step", step);
        py::gil_scoped_release release;
        return ops::arange_integer(first, increment, count, type);
      },
      py::arg("start"), py::arg("step"), py::arg("count"), py::arg("dtype"));
}

}  // namespace attnkit::python
