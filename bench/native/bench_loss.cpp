// The cross-entropy cases of bench/bench_loss.py through cpu:: (what
// ops::cross_entropy_* calls after its checks), mean reduction: a GPT-2
// vocabulary (V = 50257) and a character-level one (V = 65). Bytes as in
// bench_loss.py: forward reads the logits and targets and writes each row's
// loss and statistics (against the probe's read pass); backward reads the
// logits, targets and statistics and writes dlogits (against its copy pass).
#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "bench.h"
#include "core/threading.h"
#include "cpu/loss.h"

namespace attnkit::bench {

void bench_loss(const Options& options, Report& report) {
  constexpr std::int64_t kIgnoreIndex = -100;
  const std::int64_t default_bytes = std::int64_t(128) << 20;
  struct Case {
    std::int64_t vocab, rows;
  };
  // V = 50257: 2048 rows (two sequences of 1024 tokens, as bench_loss.py) at
  // the default --mib 128, scaled with --mib so that a short run stays short.
  // V = 65: as many rows as fill --mib.
  const Case cases[] = {{50257, std::max<std::int64_t>(1, 2048 * options.bytes_per_array / default_bytes)},
                        {65, std::max<std::int64_t>(1, options.bytes_per_array / (65 * std::int64_t(sizeof(float))))}};
  std::mt19937 generator(0);
  std::normal_distribution<float> normal(0.0f, 2.0f);

  for (const Case& c : cases) {
    const std::int64_t rows = c.rows, vocab = c.vocab;
    std::vector<float> logits(static_cast<std::size_t>(rows * vocab)), dlogits(logits.size());
    for (float& v : logits) v = normal(generator);
    std::vector<std::int64_t> targets(rows);
    std::uniform_int_distribution<std::int64_t> target(0, vocab - 1);
    for (std::int64_t& t : targets) t = target(generator);
    std::vector<float> losses(rows), statistics(3 * rows);
    const float grad_loss = 1.0f;
    const double nv = double(rows * vocab), n = double(rows);
    const std::string size = "V=" + std::to_string(vocab) + ", " + std::to_string(rows) + " rows";
    for (int threads : options.threads) {
      set_num_threads(threads);
      const Timing forward = time_function(
          [&] {
            cpu::cross_entropy_forward(losses.data(), statistics.data(), logits.data(), targets.data(), rows, vocab,
                                       kIgnoreIndex, 0.0f);
            cpu::sum_in_order(losses.data(), rows);  // the mean reduction, as ops:: does it
          },
          options.warmup, options.repeats);
      report.add(timed_result("cross_entropy forward", size, threads, forward, 4 * nv + 24 * n, "GB/s",
                              memory_limit("read", threads, options), "read"));
      // Backward of the mean: every row's gradient is 1 / rows.
      const Timing backward = time_function(
          [&] {
            cpu::cross_entropy_backward(dlogits.data(), statistics.data(), &grad_loss, 0, float(rows), logits.data(),
                                        targets.data(), rows, vocab, kIgnoreIndex, 0.0f);
          },
          options.warmup, options.repeats);
      report.add(timed_result("cross_entropy backward", size, threads, backward, 8 * nv + 20 * n, "GB/s",
                              memory_limit("copy", threads, options), "copy"));
    }
  }
}

}  // namespace attnkit::bench
