// Threads: OpenMP everywhere. Kernels split their work with parallel_for so the
// grain (the least work worth a thread) is chosen in one place per kernel.
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>

#include <omp.h>

namespace attnkit {

void set_num_threads(int n);  // ValueError unless n >= 1
int get_num_threads();

// Calls body(begin, end) on disjoint chunks covering [0, n). Chunks hold at
// least `grain` items, so small problems run on one thread without paying for
// a parallel region. Only baseline translation units use this: the ISA folders
// receive plain ranges.
template <typename Body>
void parallel_for(std::int64_t n, std::int64_t grain, const Body& body) {
  if (n <= 0) return;
  const std::int64_t max_chunks = std::max<std::int64_t>(1, n / std::max<std::int64_t>(1, grain));
  const int threads = static_cast<int>(std::min<std::int64_t>(get_num_threads(), max_chunks));
  if (threads <= 1 || omp_in_parallel()) {
    body(std::int64_t(0), n);
    return;
  }
  // An exception must not leave an OpenMP region (that terminates the
  // process): the first one is caught, and rethrown once the region is over.
  std::exception_ptr failure;
#pragma omp parallel num_threads(threads)
  {
    const std::int64_t t = omp_get_thread_num();
    const std::int64_t nt = omp_get_num_threads();
    const std::int64_t begin = n * t / nt;
    const std::int64_t end = n * (t + 1) / nt;
    try {
      if (begin < end) body(begin, end);
    } catch (...) {
#pragma omp critical(attnkit_parallel_for_failure)
      if (!failure) failure = std::current_exception();
    }
  }
  if (failure) std::rethrow_exception(failure);
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
