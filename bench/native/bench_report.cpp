// Timing and the printed table, shared by every benchmark.
#include <algorithm>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "bench.h"

namespace attnkit::bench {

Timing time_function(const std::function<void()>& fn, int warmup, int repeats) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> seconds;
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(seconds.begin(), seconds.end());
  const std::size_t m = seconds.size() / 2;
  const double median = seconds.size() % 2 ? seconds[m] : 0.5 * (seconds[m - 1] + seconds[m]);
  return {median, seconds.front(), seconds.back()};
}

Result timed_result(std::string op, std::string variant, int threads, const Timing& timing, double work,
                    std::string unit, double limit, std::string limit_name) {
  return {std::move(op),
          std::move(variant),
          threads,
          timing.median * 1e3,
          0.5 * (timing.high - timing.low) / timing.median,
          work / timing.median * 1e-9,
          std::move(unit),
          limit,
          std::move(limit_name)};
}

void Report::print() const {
  std::printf("%-24s %-30s %3s %9s %5s %16s %8s  %s\n", "op", "case", "thr", "ms", "±", "throughput", "of limit",
              "limit");
  for (const Result& r : results_) {
    char milliseconds[16] = "-", spread[16] = "-", value[32], fraction[16] = "-", limit[48] = "-";
    if (r.milliseconds > 0) {
      std::snprintf(milliseconds, sizeof milliseconds, "%.3f", r.milliseconds);
      std::snprintf(spread, sizeof spread, "%.0f%%", 100.0 * r.half_spread);
    }
    std::snprintf(value, sizeof value, "%.1f %s", r.throughput, r.unit.c_str());
    if (r.limit > 0) {
      std::snprintf(fraction, sizeof fraction, "%.0f%%", 100.0 * r.throughput / r.limit);
      std::snprintf(limit, sizeof limit, "%.1f %s %s", r.limit, r.unit.c_str(), r.limit_name.c_str());
    }
    std::printf("%-24s %-30s %3d %9s %5s %16s %8s  %s\n", r.op.c_str(), r.variant.c_str(), r.threads, milliseconds,
                spread, value, fraction, limit);
  }
}

}  // namespace attnkit::bench
