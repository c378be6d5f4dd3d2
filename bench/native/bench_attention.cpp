// The attention shapes of bench/bench_attention.py through cpu::attention_*
// (what ops:: calls after its checks): forward and forward+backward GFLOP/s
// (causal counts half), against the FMA peak.
#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "bench.h"
#include "core/cpu_features.h"
#include "core/threading.h"
#include "cpu/attention.h"
#include "cpu/probe.h"

namespace attnkit::bench {

void bench_attention(const Options& options, Report& report) {
  struct Shape {
    std::int64_t b, h, t, d;
    bool causal;
  };
  const Shape shapes[] = {{4, 12, 256, 64, false}, {1, 12, 1024, 64, false}, {8, 8, 128, 64, false},
                          {1, 16, 4096, 64, true}, {12, 4, 64, 32, true},    {4, 12, 256, 64, true}};
  std::mt19937 generator(0);
  std::normal_distribution<float> normal(0.0f, 1.0f);

  for (int threads : options.threads) {
    set_num_threads(threads);
    const double peak = cpu::fma_peak(threads, active_cpu_isa());
    for (const Shape& s : shapes) {
      const std::int64_t n = s.b * s.t * s.h * s.d;
      std::vector<float> q(n), k(n), v(n), dout(n), out(n), dq(n), dk(n), dv(n), lse(s.b * s.h * s.t);
      for (auto* x : {&q, &k, &v, &dout})
        for (float& value : *x) value = normal(generator);
      cpu::AttentionProblem p{};
      p.batch = s.b;
      p.query_length = p.key_length = s.t;
      p.heads = p.kv_heads = s.h;
      p.head_dim = s.d;
      p.scale = 1.0f / std::sqrt(static_cast<float>(s.d));
      p.causal = s.causal;
      p.for_backward = true;
      const double flops = 4.0 * s.b * s.h * s.t * s.t * s.d * (s.causal ? 0.5 : 1.0);
      const std::string name = "B" + std::to_string(s.b) + " H" + std::to_string(s.h) + " T" + std::to_string(s.t) +
                               " D" + std::to_string(s.d) + (s.causal ? " causal" : "");
      const Timing forward =
          time_function([&] { cpu::attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), p); },
                        options.warmup, options.repeats);
      report.add(timed_result("attention forward", name, threads, forward, flops, "GFLOP/s", peak, "FMA peak"));
      const Timing both = time_function(
          [&] {
            cpu::attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), p);
            cpu::attention_backward(dq.data(), dk.data(), dv.data(), dout.data(), q.data(), k.data(), v.data(),
                                    out.data(), lse.data(), p);
          },
          options.warmup, options.repeats);
      report.add(timed_result("attention fwd+bwd", name, threads, both, 3.5 * flops, "GFLOP/s", peak, "FMA peak"));
    }
  }
}

}  // namespace attnkit::bench
