// The softmax cases of bench/bench_softmax.py through cpu::softmax_* (what
// ops:: calls after its checks): rows of 1024 and 4096 filling --mib per
// array, forward against the probe's copy pass (reads x, writes y) and
// backward against its triad pass (reads dy and y, writes dx).
#include <random>
#include <string>
#include <vector>

#include "bench.h"
#include "core/threading.h"
#include "cpu/softmax.h"

namespace attnkit::bench {

void bench_softmax(const Options& options, Report& report) {
  const std::int64_t elements = options.bytes_per_array / std::int64_t(sizeof(float));
  std::vector<float> x(elements), dy(elements), y(elements), dx(elements);
  std::mt19937 generator(0);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (float& v : x) v = normal(generator);
  for (float& v : dy) v = normal(generator);

  for (std::int64_t width : {1024, 4096}) {
    const std::int64_t rows = elements / width;  // --mib >= 1: at least 64 rows
    const double n = double(rows * width);
    const std::string size = "C=" + std::to_string(width) + ", " + std::to_string(rows) + " rows";
    for (int threads : options.threads) {
      set_num_threads(threads);
      const double copy = memory_limit("copy", threads, options);
      const double triad = memory_limit("triad", threads, options);
      for (bool log : {false, true}) {
        const std::string name = log ? "log_softmax" : "softmax";
        // The backward's y is the forward's output of the same form.
        const Timing forward = time_function([&] { cpu::softmax_forward(y.data(), x.data(), rows, width, 1.0f, log); },
                                             options.warmup, options.repeats);
        report.add(timed_result(name + " forward", size, threads, forward, 8.0 * n, "GB/s", copy, "copy"));
        const Timing backward =
            time_function([&] { cpu::softmax_backward(dx.data(), dy.data(), y.data(), rows, width, 1.0f, log); },
                          options.warmup, options.repeats);
        report.add(timed_result(name + " backward", size, threads, backward, 12.0 * n, "GB/s", triad, "triad"));
      }
    }
  }
}

}  // namespace attnkit::bench
