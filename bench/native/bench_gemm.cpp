// The GEMM shapes of bench/bench_gemm.py through cpu::gemm (what ops::matmul
// calls after its checks), against the FMA peak; the decode shapes in GB/s of
// B, rotating through copies of B larger than the L3.
#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "bench.h"
#include "core/cpu_features.h"
#include "core/threading.h"
#include "cpu/gemm.h"
#include "cpu/probe.h"

namespace attnkit::bench {

void bench_gemm(const Options& options, Report& report) {
  struct Shape {
    std::int64_t m, k, n;
  };
  const Shape shapes[] = {{512, 512, 512},  {1024, 1024, 1024}, {768, 768, 768},
                          {2048, 768, 768}, {2048, 768, 3072},  {2048, 3072, 768}};
  const Shape decode_shapes[] = {{1, 768, 3072}, {8, 768, 3072}};
  std::mt19937 generator(0);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto random_vector = [&](std::int64_t n) {
    std::vector<float> v(static_cast<std::size_t>(n));
    for (float& x : v) x = normal(generator);
    return v;
  };

  const cpu::GemmConfig config = cpu::gemm_config();
  const CpuCaches& caches = cpu_caches();
  std::printf(
      "gemm: %s tile %dx%d, blocks MC %lld KC %lld NC %lld%s; caches L1d %lld KiB, L2 %lld KiB, L3 %lld KiB (%s)\n",
      cpu_isa_name(active_cpu_isa()), config.shape.mr, config.shape.nr, static_cast<long long>(config.blocking.mc),
      static_cast<long long>(config.blocking.kc), static_cast<long long>(config.blocking.nc),
      config.overridden ? " (overridden)" : "", static_cast<long long>(caches.l1d_bytes >> 10),
      static_cast<long long>(caches.l2_bytes >> 10), static_cast<long long>(caches.l3_bytes >> 10), caches.source);
  for (int threads : options.threads) {
    set_num_threads(threads);
    const double peak = cpu::fma_peak(threads, active_cpu_isa());
    for (const Shape& s : shapes) {
      const std::vector<float> a = random_vector(s.m * s.k), b = random_vector(s.k * s.n);
      std::vector<float> c(static_cast<std::size_t>(s.m * s.n));
      const Timing t = time_function(
          [&] { cpu::gemm(c.data(), s.n, a.data(), s.k, false, b.data(), s.n, false, s.m, s.n, s.k, 1.0f, 0.0f); },
          options.warmup, options.repeats);
      report.add(timed_result("gemm", std::to_string(s.m) + "x" + std::to_string(s.k) + "x" + std::to_string(s.n),
                              threads, t, 2.0 * s.m * s.n * s.k, "GFLOP/s", peak, "FMA peak"));
    }
    const double read = memory_limit("read", threads, options);
    for (const Shape& s : decode_shapes) {
      // enough copies of B that every product reads its B from memory
      const std::int64_t copies = std::max<std::int64_t>(2, options.bytes_per_array / (4 * s.k * s.n));
      std::vector<std::vector<float>> weights;
      for (std::int64_t i = 0; i < copies; ++i) weights.push_back(random_vector(s.k * s.n));
      const std::vector<float> a = random_vector(s.m * s.k);
      std::vector<float> c(static_cast<std::size_t>(s.m * s.n));
      for (bool transposed : {false, true}) {
        const Timing t = time_function(
            [&] {
              for (const std::vector<float>& w : weights)
                cpu::gemm(c.data(), s.n, a.data(), s.k, false, w.data(), transposed ? s.k : s.n, transposed, s.m, s.n,
                          s.k, 1.0f, 0.0f);
            },
            options.warmup, options.repeats);
        report.add(timed_result("gemm decode",
                                std::to_string(s.m) + "x" + std::to_string(s.k) + "x" + std::to_string(s.n) +
                                    (transposed ? " W[N,K]" : " B[K,N]"),
                                threads, t, 4.0 * s.k * s.n * copies, "GB/s", read, "read"));
      }
    }
  }
}

}  // namespace attnkit::bench
