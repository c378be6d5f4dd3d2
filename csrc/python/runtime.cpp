#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "core/allocator.h"
#include "core/cpu_features.h"
#include "core/threading.h"
#include "python/bindings.h"

namespace py = pybind11;

namespace attnkit::python {

void bind_runtime(py::module_& m) {
  m.def("set_num_threads", &set_num_threads, py::arg("n"));
  m.def("get_num_threads", &get_num_threads);

  m.def("cpu_isa", [] { return std::string(cpu_isa_name(active_cpu_isa())); });
  m.def("supported_cpu_isas", [] {
    std::vector<std::string> names;
    for (CpuIsa isa : supported_cpu_isas()) names.emplace_back(cpu_isa_name(isa));
    return names;
  });
  m.def("select_cpu_isa", &select_cpu_isa, py::arg("name"));
  m.def("cpu_features", [] { return cpu_feature_names(); });

  m.def("cpu_memory_stats", [] {
    const CpuMemoryStats s = cpu_memory_stats();
    py::dict out;
    out["allocated_bytes"] = s.allocated_bytes;
    out["cached_bytes"] = s.cached_bytes;
    out["cache_limit_bytes"] = s.cache_limit_bytes;
    out["allocations"] = s.allocations;
    out["cache_hits"] = s.cache_hits;
    return out;
  });
  m.def("cpu_empty_cache", &cpu_empty_cache);

  m.def("build_info", [] {
    py::dict out;
    out["version"] = ATTNKIT_VERSION_STRING;
    out["build_type"] = ATTNKIT_BUILD_TYPE;
    out["compiler"] = ATTNKIT_COMPILER;
    out["cuda"] = ATTNKIT_CUDA_STATUS;
    std::vector<std::string> compiled;
    for (CpuIsa isa : compiled_cpu_isas()) compiled.emplace_back(cpu_isa_name(isa));
    out["compiled_isas"] = compiled;
    const CpuCaches& caches = cpu_caches();
    py::dict cache_sizes;
    cache_sizes["l1d_bytes"] = caches.l1d_bytes;
    cache_sizes["l2_bytes"] = caches.l2_bytes;
    cache_sizes["l3_bytes"] = caches.l3_bytes;
    cache_sizes["l2_sharing"] = caches.l2_sharing;
    cache_sizes["l3_sharing"] = caches.l3_sharing;
    cache_sizes["source"] = caches.source;
    out["cpu_caches"] = cache_sizes;
    out["thread_spin_us"] = thread_spin_microseconds();
    return out;
  });
}

}  // namespace attnkit::python
