// The thread pool behind parallel_for (see threading.h for why it is not
// OpenMP's team).
//
// Workers 1..N-1 are started on first use and never stopped; the thread that
// calls a region is thread 0. Each worker has its own slot: the caller writes
// the region into a worker's slot and then bumps the slot's ticket, and the
// worker, waiting for its ticket to change, runs its piece and counts itself
// done. A worker that sees no new ticket for thread_spin_microseconds() goes
// to sleep on a condition variable, so idle attnkit threads stop competing for
// the cores soon after the last kernel returns.
#include "core/threading.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#ifdef __linux__
#include <pthread.h>
#include <sched.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "core/errors.h"

namespace attnkit {

namespace {

// An idle worker spins this long before it sleeps. Long enough that the
// kernels of one layer or one training step, called back to back from Python
// (tens of microseconds apart), find the workers awake; short enough that
// another library's threads get the cores back almost at once after the last
// call (numpy's 1024^3 product takes ~7 ms on two cores here).
constexpr int kDefaultSpinMicroseconds = 100;

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

int parse_positive(const char* text, int fallback) {
  if (text == nullptr || *text == '\0') return fallback;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (end == text || value < 0) return fallback;
  return static_cast<int>(std::min<long>(value, 1 << 30));
}

int default_threads() {
  // OMP_NUM_THREADS may be a list ("4,2", one count per nesting level): its
  // first entry counts here.
  const int from_environment = parse_positive(std::getenv("OMP_NUM_THREADS"), 0);
  if (from_environment >= 1) return std::min(from_environment, kMaxThreads);
#ifdef __linux__
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return std::min(CPU_COUNT(&set), kMaxThreads);
#endif
  const unsigned hardware = std::thread::hardware_concurrency();
  return hardware == 0 ? 1 : std::min(static_cast<int>(hardware), kMaxThreads);
}

std::atomic<int>& thread_count() {
  static std::atomic<int> count{default_threads()};
  return count;
}

thread_local bool t_in_region = false;

// One region in flight: lives on the caller's stack until every worker of
// its team has counted itself done.
struct Region {
  detail::RegionBody body;
  int team;
  std::atomic<int> running;  // workers (not the caller) still inside body
  std::mutex failure_mutex;
  std::exception_ptr failure;

  void run_piece(int thread) {
    const bool outer = t_in_region;
    t_in_region = true;
    try {
      body.call(body.object, thread, team);
    } catch (...) {
      std::lock_guard<std::mutex> lock(failure_mutex);
      if (!failure) failure = std::current_exception();
    }
    t_in_region = outer;
  }
};

class Pool {
 public:
  void run(int threads, detail::RegionBody body) {
    std::unique_lock<std::mutex> lock(run_mutex_, std::try_to_lock);
    if (!lock.owns_lock()) {  // another thread's region holds the workers
      run_alone(body);
      return;
    }
    start_workers(threads - 1);
    Region region{body, threads, {threads - 1}, {}, {}};
    for (int w = 0; w < threads - 1; ++w) {
      slots_[w].region = &region;
      slots_[w].ticket.fetch_add(1, std::memory_order_seq_cst);
    }
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard<std::mutex> sleep_lock(sleep_mutex_);
      wake_.notify_all();
    }
    region.run_piece(0);
    // The caller's piece is done; the workers' are about as long.
    for (int spins = 0; region.running.load(std::memory_order_acquire) > 0; ++spins) {
      if (spins < 1 << 16) cpu_relax();
      else std::this_thread::yield();
    }
    if (region.failure) std::rethrow_exception(region.failure);
  }

  static void run_alone(detail::RegionBody body) {
    Region region{body, 1, {0}, {}, {}};
    region.run_piece(0);
    if (region.failure) std::rethrow_exception(region.failure);
  }

 private:
  struct alignas(64) Slot {  // one cache line each: workers poll their own
    std::atomic<std::uint64_t> ticket{0};
    Region* region = nullptr;
  };

  void start_workers(int count) {
    if (count <= started_) return;
    if (slots_.empty()) slots_ = std::vector<Slot>(kMaxThreads);
    for (int w = started_; w < count; ++w) std::thread([this, w] { work(w); }).detach();
    started_ = count;
  }

  // Worker w runs piece w + 1 of each region its ticket announces.
  void work(int w) {
    Slot& slot = slots_[w];
    std::uint64_t seen = 0;
    const auto spin = std::chrono::microseconds(thread_spin_microseconds());
    for (;;) {
      std::uint64_t ticket = slot.ticket.load(std::memory_order_acquire);
      if (ticket == seen) {
        const auto start = std::chrono::steady_clock::now();
        for (int i = 1; ticket == seen; ++i) {
          cpu_relax();
          ticket = slot.ticket.load(std::memory_order_acquire);
          if (ticket == seen && i % 64 == 0 && std::chrono::steady_clock::now() - start > spin) {
            std::unique_lock<std::mutex> lock(sleep_mutex_);
            sleepers_.fetch_add(1, std::memory_order_seq_cst);
            while ((ticket = slot.ticket.load(std::memory_order_seq_cst)) == seen) wake_.wait(lock);
            sleepers_.fetch_sub(1, std::memory_order_seq_cst);
          }
        }
      }
      seen = ticket;
      Region* region = slot.region;
      region->run_piece(w + 1);
      region->running.fetch_sub(1, std::memory_order_release);  // region may be gone after this
    }
  }

  std::mutex run_mutex_;  // one region at a time uses the workers
  std::vector<Slot> slots_;
  int started_ = 0;
  std::mutex sleep_mutex_;
  std::condition_variable wake_;
  std::atomic<int> sleepers_{0};
};

// Never destroyed: detached workers may still touch it while the process
// exits. A forked child has none of the parent's workers, so it starts a new
// pool (the old one is left as it was, unused).
std::atomic<Pool*> g_pool{nullptr};

void forget_pool_in_child() {
  g_pool.store(nullptr);
}

Pool& pool() {
  Pool* p = g_pool.load(std::memory_order_acquire);
  if (p != nullptr) return *p;
  static std::once_flag registered;
  std::call_once(registered, [] {
#ifdef __linux__
    pthread_atfork(nullptr, nullptr, forget_pool_in_child);
#endif
  });
  static std::mutex creating;
  std::lock_guard<std::mutex> lock(creating);
  p = g_pool.load(std::memory_order_acquire);
  if (p == nullptr) {
    p = new Pool();
    g_pool.store(p, std::memory_order_release);
  }
  return *p;
}

}  // namespace

void set_num_threads(int n) {
  if (n < 1 || n > kMaxThreads)
    throw_value_error("set_num_threads", "n", "an integer from 1 to " + std::to_string(kMaxThreads), std::to_string(n));
  thread_count().store(n, std::memory_order_relaxed);
}

int get_num_threads() {
  return thread_count().load(std::memory_order_relaxed);
}

bool in_parallel_region() {
  return t_in_region;
}

int thread_spin_microseconds() {
  static const int microseconds = parse_positive(std::getenv("ATTNKIT_THREAD_SPIN_US"), kDefaultSpinMicroseconds);
  return microseconds;
}

namespace detail {

void run_region(int threads, RegionBody body) {
  if (threads <= 1 || t_in_region) {
    Pool::run_alone(body);
    return;
  }
  pool().run(std::min(threads, kMaxThreads), body);
}

}  // namespace detail

}  // namespace attnkit
