// GELU forward and backward over arrays far above the L3, through the
// threaded cpu:: entry points (what ops:: calls after its checks).
#include <random>
#include <string>
#include <vector>

#include "bench.h"
#include "core/threading.h"
#include "cpu/activation.h"

namespace attnkit::bench {

void bench_activation(const Options& options, Report& report) {
  const std::int64_t n = options.bytes_per_array / std::int64_t(sizeof(float));
  std::vector<float> x(n), dy(n), out(n);
  std::mt19937 generator(0);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (float& v : x) v = normal(generator);
  for (float& v : dy) v = normal(generator);
  const std::string size = std::to_string(n) + " floats";

  for (int threads : options.threads) {
    set_num_threads(threads);
    // Forward moves 1 read + 1 write per element, like the probe's copy;
    // backward 2 reads + 1 write, like its triad.
    const double copy = memory_limit("copy", threads, options);
    const double triad = memory_limit("triad", threads, options);
    for (auto approximation : {cpu::GeluApproximation::none, cpu::GeluApproximation::tanh}) {
      const std::string form = approximation == cpu::GeluApproximation::none ? "none" : "tanh";
      const Timing forward = time_function([&] { cpu::gelu_forward(out.data(), x.data(), n, approximation); },
                                           options.warmup, options.repeats);
      report.add(timed_result("gelu forward", form + ", " + size, threads, forward, 8.0 * n, "GB/s", copy, "copy"));
      const Timing backward =
          time_function([&] { cpu::gelu_backward(out.data(), dy.data(), x.data(), n, approximation); }, options.warmup,
                        options.repeats);
      report.add(
          timed_result("gelu backward", form + ", " + size, threads, backward, 12.0 * n, "GB/s", triad, "triad"));
    }
  }
}

}  // namespace attnkit::bench
