#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>

#include "core/cpu_features.h"
#include "core/errors.h"
#include "cpu/gemm.h"
#include "ops/gemm.h"
#include "python/bindings.h"

namespace py = pybind11;

namespace attnkit::python {

void bind_gemm(py::module_& m) {
  m.def(
      "matmul",
      [](const Array& a, const Array& b, bool transpose_a, bool transpose_b, float alpha, float beta,
         const std::optional<Array>& out, const std::optional<Array>& bias, const std::string& activation,
         bool save_pre_activation, const std::optional<std::string>& out_dtype) {
        ops::MatmulOptions options;
        options.out_dtype = out_dtype ? dtype_from_name(*out_dtype) : a.dtype();
        options.transpose_a = transpose_a;
        options.transpose_b = transpose_b;
        options.alpha = alpha;
        options.beta = beta;
        options.activation = ops::parse_gemm_activation(activation);
        options.save_pre_activation = save_pre_activation;
        ops::MatmulResult r = ops::matmul(a, b, out.value_or(Array()), bias.value_or(Array()), options);
        return std::make_pair(r.out, or_none(r.pre_activation));
      },
      py::arg("a"), py::arg("b"), py::arg("transpose_a") = false, py::arg("transpose_b") = false,
      py::arg("alpha") = 1.0f, py::arg("beta") = 0.0f, py::arg("out") = std::nullopt, py::arg("bias") = std::nullopt,
      py::arg("activation") = "none", py::arg("save_pre_activation") = false, py::arg("out_dtype") = std::nullopt,
      py::call_guard<py::gil_scoped_release>(),
      "activation(alpha * op(a) @ op(b) + beta * out + bias) -> (out, pre_activation or None); bfloat16 a and b "
      "give out_dtype (default bfloat16; or float32)");
  m.def("bias_gradient", &ops::bias_gradient, py::arg("grad_output"), py::call_guard<py::gil_scoped_release>());

  // What the GEMM chose on this machine, for benchmarks and `attnkit info`.
  m.def(
      "gemm_config",
      [](const std::string& dtype) {
        if (dtype != "float32" && dtype != "bfloat16")
          throw_value_error("gemm_config", "dtype", "'float32' or 'bfloat16'", "'" + dtype + "'");
        const cpu::GemmConfig config = dtype == "float32" ? cpu::gemm_config() : cpu::gemm_bf16_config();
        py::dict out;
        out["mr"] = config.shape.mr;
        out["nr"] = config.shape.nr;
        out["mc"] = config.blocking.mc;
        out["kc"] = config.blocking.kc;
        out["nc"] = config.blocking.nc;
        out["overridden"] = config.overridden;
        return out;
      },
      py::arg("dtype") = "float32");
  m.def(
      "set_gemm_blocking",
      [](std::int64_t mc, std::int64_t kc, std::int64_t nc) { cpu::set_gemm_blocking({mc, kc, nc}); }, py::arg("mc"),
      py::arg("kc"), py::arg("nc"),
      "Forces the GEMM's cache blocks (for measuring); 0, 0, 0 returns to the blocks chosen from the caches.");
  m.def(
      "gemm_blocking_for",
      [](std::int64_t l1d_bytes, std::int64_t l2_bytes, std::int64_t l3_bytes, int mr, int nr) {
        if (l1d_bytes <= 0 || l2_bytes <= 0 || l3_bytes < 0 || mr <= 0 || nr <= 0)
          throw ValueError(
              "gemm_blocking_for: arguments expected positive cache sizes (l3_bytes may be 0) and tile sizes");
        const CpuCaches caches{l1d_bytes, l2_bytes, l3_bytes, 0, 1, 1, "given"};
        const cpu::GemmBlocking blocking = cpu::gemm_blocking_for(caches, {mr, nr});
        return py::make_tuple(blocking.mc, blocking.kc, blocking.nc);
      },
      py::arg("l1d_bytes"), py::arg("l2_bytes"), py::arg("l3_bytes"), py::arg("mr"), py::arg("nr"),
      "The cache blocks (mc, kc, nc) the GEMM would choose for these caches and register tile.");
}

}  // namespace attnkit::python
