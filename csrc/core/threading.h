// Threads: attnkit's own pool. Kernels split their work with parallel_for so
// the grain (the least work worth a thread) is chosen in one place per kernel.
//
// Why not OpenMP's team: PyTorch ships a libgomp with the same soname as the
// system's, so in one process attnkit and torch share one OpenMP runtime, and
// its idle threads spin for milliseconds after every call (GOMP_SPINCOUNT),
// taking the cores from the next library's threads (numpy's OpenBLAS lost 37%
// right after an attnkit call). Bounding that spin through the runtime's
// settings would change torch's runtime too. The pool's idle workers spin for
// a bounded time (long enough to catch the next kernel of a sequence without
// a wake-up) and then sleep (threading.cpp).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>

namespace attnkit {

void set_num_threads(int n);  // ValueError unless 1 <= n <= kMaxThreads
// The threads kernels use: set_num_threads's, else OMP_NUM_THREADS when it is
// a positive integer, else one per CPU this process may run on.
int get_num_threads();
constexpr int kMaxThreads = 1024;

// Whether the calling thread is running a piece of a parallel region (a
// parallel_for inside one runs on the calling thread alone).
bool in_parallel_region();

// How long an idle worker spins for the next region before it sleeps, in
// microseconds; ATTNKIT_THREAD_SPIN_US overrides the default, for measuring.
int thread_spin_microseconds();

namespace detail {
// A non-owning reference to a callable body(thread, threads).
struct RegionBody {
  const void* object;
  void (*call)(const void* object, int thread, int threads);
};
// Runs body on `threads` threads (the caller is thread 0) and returns when all
// are done; runs it on the caller alone inside a region, or while another
// thread's region holds the pool. Exceptions: the first is rethrown here.
void run_region(int threads, RegionBody body);
}  // namespace detail

// Calls body(thread, threads) on `threads` threads at once, thread in
// [0, threads); the probes use it to run one loop per thread.
template <typename Body>
void run_on_threads(int threads, const Body& body) {
  detail::run_region(threads, {&body, [](const void* object, int thread, int count) {
                                 (*static_cast<const Body*>(object))(thread, count);
                               }});
}

// Holds the threads of one region until all `count` of them have arrived;
// reusable (one wait() per thread per phase). Only for the pieces of one
// run_on_threads region, which run at the same time on their own threads:
// pass the region's thread count.
class SpinBarrier {
 public:
  explicit SpinBarrier(int count) : count_(count) {}
  void wait() {
    const int phase = phase_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) == count_ - 1) {
      arrived_.store(0, std::memory_order_relaxed);
      phase_.store(phase + 1, std::memory_order_release);
      return;
    }
    for (int spins = 0; phase_.load(std::memory_order_acquire) == phase; ++spins)
      if (spins > 1 << 12) std::this_thread::yield();
  }

 private:
  const int count_;
  std::atomic<int> arrived_{0};
  std::atomic<int> phase_{0};
};

// Calls body(begin, end) on disjoint chunks covering [0, n). Chunks hold at
// least `grain` items, so small problems run on one thread without paying for
// a parallel region. Only baseline translation units use this: the ISA folders
// receive plain ranges.
template <typename Body>
void parallel_for(std::int64_t n, std::int64_t grain, const Body& body) {
  if (n <= 0) return;
  const std::int64_t max_chunks = std::max<std::int64_t>(1, n / std::max<std::int64_t>(1, grain));
  const int threads = static_cast<int>(std::min<std::int64_t>(get_num_threads(), max_chunks));
  if (threads <= 1 || in_parallel_region()) {
    body(std::int64_t(0), n);
    return;
  }
  run_on_threads(threads, [&](int t, int nt) {
    const std::int64_t begin = n * t / nt;
    const std::int64_t end = n * (t + 1) / nt;
    if (begin < end) body(begin, end);
  });
}

// Calls body(begin, count) on consecutive pieces of [0, n) made of whole
// blocks of `block` items (the last may be short), at least `grain_blocks`
// blocks to a thread. Elementwise kernels use it so that no two threads write
// the same cache line and every piece but the last is whole vectors.
template <typename Body>
void parallel_for_blocks(std::int64_t n, std::int64_t block, std::int64_t grain_blocks, const Body& body) {
  const std::int64_t blocks = (n + block - 1) / block;
  parallel_for(blocks, grain_blocks, [&](std::int64_t b0, std::int64_t b1) {
    const std::int64_t begin = b0 * block;
    const std::int64_t end = std::min(n, b1 * block);
    body(begin, end - begin);
  });
}

}  // namespace attnkit
