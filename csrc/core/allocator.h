// The CPU allocator: 64-byte aligned blocks (one cache line, one AVX-512
// register), and a cache of freed blocks keyed by rounded size. A training loop
// allocates the same sizes every step; handing back a block it freed a moment
// ago avoids both malloc's bookkeeping and the page faults of touching fresh
// memory, which for large activations cost more than the kernels themselves.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>

namespace attnkit {

constexpr std::size_t kCpuAlignment = 64;
// The largest request: 2^63 bytes (more than any machine has; the bound keeps
// the size-class arithmetic from overflowing).
constexpr std::size_t kMaxAllocationBytes = std::size_t(1) << 63;

// std::bad_alloc when the memory cannot be had.
void* cpu_allocate(std::size_t nbytes);
void cpu_free(void* pointer, std::size_t nbytes);

struct CpuMemoryStats {
  std::size_t allocated_bytes;  // handed out and not yet freed (rounded sizes)
  std::size_t cached_bytes;     // freed, held for reuse
  std::size_t cache_limit_bytes;
  std::uint64_t allocations;  // cpu_allocate calls
  std::uint64_t cache_hits;   // ... that reused a cached block
};
CpuMemoryStats cpu_memory_stats();
// Returns every cached block to the system.
void cpu_empty_cache();
// Cached bytes above this limit are returned to the system (default 4 GiB,
// or ATTNKIT_CPU_CACHE_LIMIT_MB).
void cpu_set_cache_limit(std::size_t nbytes);

// Uninitialized floats from the allocator for the length of a scope (the
// kernels' packing buffers and tiles).
class ScratchBuffer {
 public:
  explicit ScratchBuffer(std::size_t floats)
      : bytes_(scratch_bytes(floats)), data_(static_cast<float*>(cpu_allocate(bytes_))) {}
  ~ScratchBuffer() { cpu_free(data_, bytes_); }
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  float* data() const { return data_; }

 private:
  static std::size_t scratch_bytes(std::size_t floats) {
    if (floats > kMaxAllocationBytes / sizeof(float)) throw std::bad_alloc();
    return (floats > 0 ? floats : 1) * sizeof(float);
  }

  std::size_t bytes_;
  float* data_;
};

}  // namespace attnkit
