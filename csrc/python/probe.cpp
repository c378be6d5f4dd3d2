#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>

#include "cpu/probe.h"
#include "python/bindings.h"

namespace py = pybind11;

namespace attnkit::python {

void bind_probe(py::module_& m) {
  m.def(
      "probe_memory_bandwidth",
      [](const std::string& kind, std::int64_t nbytes, int threads, int repeats) {
        return cpu::memory_bandwidth(cpu::parse_memory_pass(kind), nbytes, threads, repeats);
      },
      py::arg("kind"), py::arg("nbytes"), py::arg("threads"), py::arg("repeats"),
      py::call_guard<py::gil_scoped_release>(),
      "Median GB/s of a 'read', 'write', 'copy' or 'triad' pass over nbytes of\n"
      "memory (split over the pass's arrays) on `threads` threads, active ISA.");
  m.def(
      "probe_fma_peak",
      [](int threads, const std::optional<std::string>& isa) {
        return cpu::fma_peak(threads, cpu::parse_probe_isa(isa.value_or("")));
      },
      py::arg("threads"), py::arg("isa") = py::none(), py::call_guard<py::gil_scoped_release>(),
      "Median FP32 GFLOP/s of independent FMA chains on `threads` threads with the\n"
      "kernels of `isa` (None: the active ISA).");
}

}  // namespace attnkit::python
