#include "cpu/probe.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <vector>

#include "core/errors.h"
#include "core/threading.h"
#include "cpu/dispatch.h"

namespace attnkit::cpu {

namespace {

constexpr std::int64_t kCacheLineFloats = 16;
constexpr std::int64_t kMinBytes = 4096;

void check_threads(const char* op, int threads) {
  if (threads < 1 || threads > kMaxThreads)
    throw_value_error(op, "threads", "an integer from 1 to " + std::to_string(kMaxThreads), std::to_string(threads));
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t m = values.size() / 2;
  return values.size() % 2 ? values[m] : 0.5 * (values[m - 1] + values[m]);
}

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<float, FreeDeleter>;

Buffer allocate_floats(std::int64_t n) {
  // Page-aligned, so every thread's range starts on its own cache line and
  // the kernel may allocate the range with huge pages.
  const std::size_t bytes = static_cast<std::size_t>(n) * sizeof(float);
  float* p = static_cast<float*>(std::aligned_alloc(4096, (bytes + 4095) / 4096 * 4096));
  if (!p) throw RuntimeError("probe_memory_bandwidth: could not allocate " + std::to_string(bytes) + " bytes");
  return Buffer(p);
}

// Thread t's share of [0, n) among nt, in whole cache lines, so no two
// threads write one line.
void thread_range(std::int64_t n, int t, int nt, std::int64_t* begin, std::int64_t* end) {
  const std::int64_t lines = n / kCacheLineFloats;
  *begin = lines * t / nt * kCacheLineFloats;
  *end = lines * (t + 1) / nt * kCacheLineFloats;
}

}  // namespace

MemoryPass parse_memory_pass(const std::string& kind) {
  if (kind == "read") return MemoryPass::read;
  if (kind == "write") return MemoryPass::write;
  if (kind == "copy") return MemoryPass::copy;
  if (kind == "triad") return MemoryPass::triad;
  throw_value_error("probe_memory_bandwidth", "kind", "one of read, write, copy, triad", "'" + kind + "'");
}

double memory_bandwidth(MemoryPass kind, std::int64_t nbytes, int threads, int repeats) {
  const char* op = "probe_memory_bandwidth";
  if (nbytes < kMinBytes)
    throw_value_error(op, "nbytes", "at least " + std::to_string(kMinBytes), std::to_string(nbytes));
  check_threads(op, threads);
  if (repeats < 1 || repeats > 1000)
    throw_value_error(op, "repeats", "an integer from 1 to 1000", std::to_string(repeats));

  const int arrays = kind == MemoryPass::copy ? 2 : kind == MemoryPass::triad ? 3 : 1;
  const std::int64_t n = nbytes / arrays / std::int64_t(sizeof(float)) / kCacheLineFloats * kCacheLineFloats;
  const double bytes_per_pass = double(n) * sizeof(float) * arrays;
  Buffer a = allocate_floats(n);
  Buffer b = arrays >= 2 ? allocate_floats(n) : Buffer();
  Buffer c = arrays >= 3 ? allocate_floats(n) : Buffer();
  const ProbeKernels& kernels = *active_kernels().probe;

  // Touch every page on the thread that will use it (first touch places pages
  // on that thread's NUMA node) before anything is timed.
  run_on_threads(threads, [&](int t, int nt) {
    std::int64_t begin, end;
    thread_range(n, t, nt, &begin, &end);
    kernels.memory_write(a.get() + begin, 1.0f, end - begin);
    if (b) kernels.memory_write(b.get() + begin, 2.0f, end - begin);
    if (c) kernels.memory_write(c.get() + begin, 0.5f, end - begin);
  });

  std::vector<double> rates;
  // One slot per thread, on its own cache line, for the read pass's sums.
  std::vector<float> sums(static_cast<std::size_t>(threads) * kCacheLineFloats, 0.0f);
  for (int pass = 0; pass <= repeats; ++pass) {  // pass 0 warms up, untimed
    const auto start = std::chrono::steady_clock::now();
    run_on_threads(threads, [&](int t, int nt) {
      std::int64_t begin, end;
      thread_range(n, t, nt, &begin, &end);
      const std::int64_t count = end - begin;
      switch (kind) {
        case MemoryPass::read: sums[t * kCacheLineFloats] += kernels.memory_read(a.get() + begin, count); break;
        case MemoryPass::write: kernels.memory_write(a.get() + begin, float(pass), count); break;
        case MemoryPass::copy: kernels.memory_copy(b.get() + begin, a.get() + begin, count); break;
        case MemoryPass::triad:
          kernels.memory_triad(a.get() + begin, b.get() + begin, c.get() + begin, 0.5f, count);
          break;
      }
    });
    const double seconds = seconds_since(start);
    if (pass > 0) rates.push_back(bytes_per_pass / seconds * 1e-9);
  }
  // The sums must be used, or the read pass could be optimized away.
  float sink = 0.0f;
  for (float s : sums) sink += s;
  volatile float keep = sink;
  (void)keep;
  return median(rates);
}

CpuIsa parse_probe_isa(const std::string& name) {
  if (name.empty()) return active_cpu_isa();
  std::string have;
  for (CpuIsa isa : supported_cpu_isas()) {
    if (name == cpu_isa_name(isa)) return isa;
    have += std::string(have.empty() ? "" : ", ") + cpu_isa_name(isa);
  }
  for (CpuIsa isa : kCpuIsas)
    if (name == cpu_isa_name(isa))
      throw RuntimeError("probe_fma_peak: this CPU (or this build) cannot run " + name +
                         " kernels; available here: " + have);
  throw_value_error("probe_fma_peak", "isa", "one of " + known_cpu_isa_names() + " or None", "'" + name + "'");
}

double fma_peak(int threads, CpuIsa isa) {
  check_threads("probe_fma_peak", threads);
  const ProbeKernels& kernels = *kernels_for(isa).probe;
  const auto chains = kernels.fma_chains;
  const int flops_per_iteration = kernels.fma_flops_per_iteration;
  // volatile: the compiler must not see the constants and fold the chains.
  volatile float multiplier_source = 0.999999f;
  volatile float addend_source = 1e-6f;
  const float multiplier = multiplier_source;
  const float addend = addend_source;

  // Size one run to about 50 ms on one thread from a short calibration run, so
  // clock ramp-up and the parallel region's start cost vanish in the total.
  std::int64_t iterations = 1 << 14;
  for (;;) {
    const auto start = std::chrono::steady_clock::now();
    volatile float keep = chains(iterations, multiplier, addend);
    (void)keep;
    const double seconds = seconds_since(start);
    if (seconds > 0.01 || iterations > (std::int64_t(1) << 40)) {
      iterations = std::max<std::int64_t>(1, std::int64_t(iterations * 0.05 / seconds));
      break;
    }
    iterations *= 4;
  }

  constexpr int kRepeats = 5;
  std::vector<double> rates;
  std::vector<float> sums(static_cast<std::size_t>(threads) * kCacheLineFloats, 0.0f);
  for (int repeat = 0; repeat < kRepeats; ++repeat) {
    // Count the team: the region runs on the caller alone while another
    // thread's region holds the pool, and the rate must count only the
    // threads that ran.
    int team = 1;
    const auto start = std::chrono::steady_clock::now();
    run_on_threads(threads, [&](int t, int nt) {
      sums[t * kCacheLineFloats] += chains(iterations, multiplier, addend);
      if (t == 0) team = nt;
    });
    const double seconds = seconds_since(start);
    rates.push_back(double(iterations) * flops_per_iteration * team / seconds * 1e-9);
  }
  float sink = 0.0f;
  for (float s : sums) sink += s;
  volatile float keep = sink;
  (void)keep;
  return median(rates);
}

}  // namespace attnkit::cpu
