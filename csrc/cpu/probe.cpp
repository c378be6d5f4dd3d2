#include "cpu/probe.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <vector>

#include <omp.h>

#include "core/errors.h"
#include "cpu/probe_kernels.h"
#include "cpu/vec/vec_generic.h"

namespace attnkit::cpu {

namespace generic {

namespace {
// The generic Vec is one float; the compiler packs these scalar chains into
// SSE2 registers (4 lanes), where a*b+c is a multiply and a dependent add
// (latency 6-8 cycles) on two pipes each: 12 registers of 4 chains stay
// within the 16 xmm registers.
constexpr int kFmaChains = 48;
// Sixteen scalar sums, packed by the compiler into four SSE2 accumulators.
constexpr int kReadAccumulators = 16;
}  // namespace

const int fma_flops_per_iteration = 2 * Vec::width * kFmaChains;

float memory_read(const float* a, std::int64_t n) {
  return probe_kernels::memory_read<Vec, kReadAccumulators>(a, n);
}
void memory_write(float* a, float value, std::int64_t n) {
  probe_kernels::memory_write<Vec>(a, value, n);
}
void memory_copy(float* b, const float* a, std::int64_t n) {
  probe_kernels::memory_copy<Vec>(b, a, n);
}
void memory_triad(float* a, const float* b, const float* c, float scalar, std::int64_t n) {
  probe_kernels::memory_triad<Vec>(a, b, c, scalar, n);
}
float fma_chains(std::int64_t iterations, float multiplier, float addend) {
  return probe_kernels::fma_chains<Vec, kFmaChains>(iterations, multiplier, addend);
}

}  // namespace generic

namespace {

constexpr int kMaxThreads = 1024;
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

// This thread's share of [0, n), in whole cache lines, so no two threads
// write one line.
void thread_range(std::int64_t n, std::int64_t* begin, std::int64_t* end) {
  const std::int64_t lines = n / kCacheLineFloats;
  const std::int64_t t = omp_get_thread_num();
  const std::int64_t nt = omp_get_num_threads();
  *begin = lines * t / nt * kCacheLineFloats;
  *end = lines * (t + 1) / nt * kCacheLineFloats;
}

struct MemoryKernels {
  float (*read)(const float*, std::int64_t);
  void (*write)(float*, float, std::int64_t);
  void (*copy)(float*, const float*, std::int64_t);
  void (*triad)(float*, const float*, const float*, float, std::int64_t);
};

MemoryKernels memory_kernels(CpuIsa isa) {
  switch (isa) {
#ifdef ATTNKIT_HAVE_X86_KERNELS
    case CpuIsa::avx512: return {avx512::memory_read, avx512::memory_write, avx512::memory_copy, avx512::memory_triad};
    case CpuIsa::avx2: return {avx2::memory_read, avx2::memory_write, avx2::memory_copy, avx2::memory_triad};
#endif
    default: return {generic::memory_read, generic::memory_write, generic::memory_copy, generic::memory_triad};
  }
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
  const MemoryKernels kernels = memory_kernels(active_cpu_isa());

  // Touch every page on the thread that will use it (first touch places pages
  // on that thread's NUMA node) before anything is timed.
#pragma omp parallel num_threads(threads)
  {
    std::int64_t begin, end;
    thread_range(n, &begin, &end);
    kernels.write(a.get() + begin, 1.0f, end - begin);
    if (b) kernels.write(b.get() + begin, 2.0f, end - begin);
    if (c) kernels.write(c.get() + begin, 0.5f, end - begin);
  }

  std::vector<double> rates;
  float sink = 0.0f;
  for (int pass = 0; pass <= repeats; ++pass) {  // pass 0 warms up, untimed
    const auto start = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    {
      std::int64_t begin, end;
      thread_range(n, &begin, &end);
      const std::int64_t count = end - begin;
      switch (kind) {
        case MemoryPass::read: sink += kernels.read(a.get() + begin, count); break;
        case MemoryPass::write: kernels.write(a.get() + begin, float(pass), count); break;
        case MemoryPass::copy: kernels.copy(b.get() + begin, a.get() + begin, count); break;
        case MemoryPass::triad: kernels.triad(a.get() + begin, b.get() + begin, c.get() + begin, 0.5f, count); break;
      }
    }
    const double seconds = seconds_since(start);
    if (pass > 0) rates.push_back(bytes_per_pass / seconds * 1e-9);
  }
  // The sums must be used, or the read pass could be optimized away.
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
  if (name == "generic" || name == "avx2" || name == "avx512")
    throw RuntimeError("probe_fma_peak: this CPU (or this build) cannot run " + name +
                       " kernels; available here: " + have);
  throw_value_error("probe_fma_peak", "isa", "one of generic, avx2, avx512 or None", "'" + name + "'");
}

double fma_peak(int threads, CpuIsa isa) {
  check_threads("probe_fma_peak", threads);
  float (*chains)(std::int64_t, float, float) = generic::fma_chains;
  int flops_per_iteration = generic::fma_flops_per_iteration;
#ifdef ATTNKIT_HAVE_X86_KERNELS
  if (isa == CpuIsa::avx512) {
    chains = avx512::fma_chains;
    flops_per_iteration = avx512::fma_flops_per_iteration;
  } else if (isa == CpuIsa::avx2) {
    chains = avx2::fma_chains;
    flops_per_iteration = avx2::fma_flops_per_iteration;
  }
#endif
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
  float sink = 0.0f;
  for (int repeat = 0; repeat < kRepeats; ++repeat) {
    // Count the team: OpenMP may start fewer threads than asked for
    // (OMP_THREAD_LIMIT), and the rate must count only those that ran.
    int team = 0;
    const auto start = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : sink, team)
    {
      sink += chains(iterations, multiplier, addend);
      team += 1;
    }
    const double seconds = seconds_since(start);
    rates.push_back(double(iterations) * flops_per_iteration * team / seconds * 1e-9);
  }
  volatile float keep = sink;
  (void)keep;
  return median(rates);
}

}  // namespace attnkit::cpu
