// Machine probes: the limits that benchmarks state their fraction of.
//
//  - memory bandwidth: STREAM-style read (sum), write (fill), copy and triad
//    passes over arrays much larger than the last-level cache, on a given
//    number of threads, in the kernels of the active ISA;
//  - FP32 FMA peak: independent chains of fused multiply-adds, enough to keep
//    every FMA unit busy, on a given number of threads and ISA.
//
// Unlike the kernels, these entry points check their own arguments: they take
// no Array, so there is no ops/ layer above them, and the native benchmark
// calls them directly.
#pragma once

#include <cstdint>
#include <string>

#include "core/cpu_features.h"

namespace attnkit::cpu {

// Each kind moves the whole footprint once per pass, as the program sees it
// (stores count once; the cache line a store first reads is not counted, as in
// STREAM):
//   read:  sum += a[i]           one array of nbytes
//   write: a[i] = s              one array of nbytes
//   copy:  b[i] = a[i]           two arrays of nbytes / 2
//   triad: a[i] = b[i] + s c[i]  three arrays of nbytes / 3
enum class MemoryPass { read, write, copy, triad };

// "read", "write", "copy" or "triad"; ValueError otherwise.
MemoryPass parse_memory_pass(const std::string& kind);
// Median GB/s (10^9 bytes per second) of `repeats` timed passes after one
// untimed one, over a footprint of `nbytes` (rounded down to whole cache lines
// per array), on `threads` threads. ValueError for nbytes < 4 KiB, threads
// outside 1..1024 or repeats outside 1..1000.
double memory_bandwidth(MemoryPass kind, std::int64_t nbytes, int threads, int repeats);

// The ISA named ("generic", "avx2", "avx512"; "" = the active one).
// ValueError for an unknown name, RuntimeError when the CPU or build lacks it.
CpuIsa parse_probe_isa(const std::string& name);
// Median GFLOP/s (an FMA counts 2) of FP32 FMA chains on `threads` threads with
// the kernels of `isa`. ValueError for threads outside 1..1024.
double fma_peak(int threads, CpuIsa isa);

// The kernels of one ISA (cpu/dispatch.h): leaf loops over one contiguous
// range, single-threaded. n is a multiple of 16 floats (one cache line).
struct ProbeKernels {
  float (*memory_read)(const float* a, std::int64_t n);
  void (*memory_write)(float* a, float value, std::int64_t n);
  void (*memory_copy)(float* b, const float* a, std::int64_t n);
  void (*memory_triad)(float* a, const float* b, const float* c, float scalar, std::int64_t n);
  // Runs `iterations` rounds of the ISA's independent FMA chains, each round
  // fma_flops_per_iteration FLOPs, and returns a value that depends on every
  // chain (so none is optimized away).
  float (*fma_chains)(std::int64_t iterations, float multiplier, float addend);
  int fma_flops_per_iteration;
};

}  // namespace attnkit::cpu
