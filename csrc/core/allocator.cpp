#include "core/allocator.h"

#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

namespace attnkit {
namespace {

// Sizes are rounded up to a bucket so that slightly different requests share
// blocks: multiples of 64 bytes up to 4 KiB, then four buckets per power of two
// (at most 25% slack). Requests are at most kMaxAllocationBytes (checked by
// cpu_allocate), so neither the doubling nor the rounding here can overflow.
std::size_t bucket_size(std::size_t nbytes) {
  if (nbytes <= 4096) return ((nbytes + 63) / 64) * 64;
  std::size_t power = 4096;
  while (power * 2 < nbytes) power *= 2;
  const std::size_t step = power / 4;
  return ((nbytes + step - 1) / step) * step;
}

std::size_t default_cache_limit() {
  if (const char* env = std::getenv("ATTNKIT_CPU_CACHE_LIMIT_MB")) {
    char* end = nullptr;
    const unsigned long long mb = std::strtoull(env, &end, 10);
    if (end != env && *end == '\0') return static_cast<std::size_t>(mb) << 20;
  }
  return std::size_t(4) << 30;
}

struct BlockCache {
  std::mutex mutex;
  std::unordered_map<std::size_t, std::vector<void*>> free_blocks;
  CpuMemoryStats stats{0, 0, default_cache_limit(), 0, 0};

  void release_all_locked() {
    for (auto& entry : free_blocks)
      for (void* block : entry.second) std::free(block);
    free_blocks.clear();
    stats.cached_bytes = 0;
  }
};

BlockCache& cache() {
  // Leaked on purpose: blocks may be freed by static destructors of other
  // translation units (or Python objects) after this one would be destroyed.
  static BlockCache* instance = new BlockCache();
  return *instance;
}

}  // namespace

void* cpu_allocate(std::size_t nbytes) {
  if (nbytes > kMaxAllocationBytes) throw std::bad_alloc();
  const std::size_t size = bucket_size(nbytes == 0 ? 1 : nbytes);
  BlockCache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    c.stats.allocations++;
    auto it = c.free_blocks.find(size);
    if (it != c.free_blocks.end() && !it->second.empty()) {
      void* block = it->second.back();
      it->second.pop_back();
      c.stats.cached_bytes -= size;
      c.stats.allocated_bytes += size;
      c.stats.cache_hits++;
      return block;
    }
  }
  void* block = std::aligned_alloc(kCpuAlignment, size);
  if (block == nullptr) {
    // Free what the cache holds and try once more before giving up.
    {
      std::lock_guard<std::mutex> lock(c.mutex);
      c.release_all_locked();
    }
    block = std::aligned_alloc(kCpuAlignment, size);
    if (block == nullptr) throw std::bad_alloc();
  }
  std::lock_guard<std::mutex> lock(c.mutex);
  c.stats.allocated_bytes += size;
  return block;
}

void cpu_free(void* pointer, std::size_t nbytes) {
  if (pointer == nullptr) return;
  const std::size_t size = bucket_size(nbytes == 0 ? 1 : nbytes);
  BlockCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  c.stats.allocated_bytes -= size;
  if (c.stats.cached_bytes + size > c.stats.cache_limit_bytes) {
    std::free(pointer);
    return;
  }
  c.free_blocks[size].push_back(pointer);
  c.stats.cached_bytes += size;
}

CpuMemoryStats cpu_memory_stats() {
  BlockCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return c.stats;
}

void cpu_empty_cache() {
  BlockCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  c.release_all_locked();
}

void cpu_set_cache_limit(std::size_t nbytes) {
  BlockCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  c.stats.cache_limit_bytes = nbytes;
  if (c.stats.cached_bytes > nbytes) c.release_all_locked();
}

}  // namespace attnkit
