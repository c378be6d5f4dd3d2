// The native benchmark: times attnkit's kernels with no Python in the loop.
//
// Each kernel family adds one function `void bench_<family>(const Options&,
// Report&)` in bench_<family>.cpp, declares it below and lists it in
// kBenchmarks (bench_main.cpp). The function times its kernels on buffers it
// owns, at each of options.threads, and adds one Result per measurement.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace attnkit::bench {

struct Options {
  std::vector<int> threads{1, 2};
  std::int64_t bytes_per_array = std::int64_t(128) << 20;  // 4x a 32 MiB L3
  std::int64_t probe_bytes = std::int64_t(512) << 20;
  int warmup = 2;
  int repeats = 10;
};

// Seconds per call over the timed calls.
struct Timing {
  double median;
  double low;
  double high;
};

// Calls fn `warmup` times untimed, then `repeats` times timed.
Timing time_function(const std::function<void()>& fn, int warmup, int repeats);

struct Result {
  std::string op;
  std::string variant;  // sizes, form
  int threads;
  double milliseconds;  // median per call; 0 for a rate measured inside a probe
  double half_spread;   // (slowest - fastest) / median / 2
  double throughput;    // in `unit`
  std::string unit;     // "GB/s" or "GFLOP/s"
  double limit;         // the machine's limit in `unit`; 0 when none applies
  std::string limit_name;
};

// A timed call that does `work` bytes (unit "GB/s") or FLOPs ("GFLOP/s").
Result timed_result(std::string op, std::string variant, int threads, const Timing& timing, double work,
                    std::string unit, double limit, std::string limit_name);

class Report {
 public:
  void add(Result result) { results_.push_back(std::move(result)); }
  // One aligned line per result: time, throughput, fraction of the limit.
  void print() const;

 private:
  std::vector<Result> results_;
};

// Memory bandwidth of the probe's pass of `kind` ("copy", "triad", ...) at
// `threads`, measured once per process.
double memory_limit(const std::string& kind, int threads, const Options& options);

void bench_probe(const Options& options, Report& report);       // bench_probe.cpp
void bench_activation(const Options& options, Report& report);  // bench_activation.cpp
void bench_gemm(const Options& options, Report& report);        // bench_gemm.cpp
void bench_attention(const Options& options, Report& report);   // bench_attention.cpp
void bench_softmax(const Options& options, Report& report);     // bench_softmax.cpp
void bench_norm(const Options& options, Report& report);        // bench_norm.cpp
void bench_loss(const Options& options, Report& report);        // bench_loss.cpp

}  // namespace attnkit::bench
