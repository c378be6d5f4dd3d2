// The machine's limits: what every other benchmark states its fraction of.
// The probes time their own passes and report median rates.
#include <string>

#include "bench.h"
#include "core/cpu_features.h"
#include "cpu/probe.h"

namespace attnkit::bench {

void bench_probe(const Options& options, Report& report) {
  const std::string footprint = std::to_string(options.probe_bytes >> 20) + " MiB";
  for (int threads : options.threads) {
    for (const char* kind : {"read", "write", "copy", "triad"})
      report.add({std::string("memory ") + kind, footprint, threads, 0, 0, memory_limit(kind, threads, options), "GB/s",
                  0, ""});
    for (CpuIsa isa : supported_cpu_isas())
      report.add({"fma peak", cpu_isa_name(isa), threads, 0, 0, cpu::fma_peak(threads, isa), "GFLOP/s", 0, ""});
  }
}

}  // namespace attnkit::bench
