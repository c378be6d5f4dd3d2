// How baseline code reaches the kernels of the active ISA: one table of
// function pointers per op family and ISA.
//
// A family with ISA-specific kernels declares its table in its header (struct
// NormKernels in cpu/norm.h). csrc/cpu/isa/<family>.cpp defines the table from
// the family's templates (cpu/<family>_kernels.h) over the ISA's Vec, and CMake
// compiles that file once per ISA, with the ISA's flags, in the ISA's own
// namespace (cpu/isa/isa.h). isa/kernel_tables.cpp gathers one ISA's family
// tables into a KernelTables. A kernel call looks the tables up once, before
// its loops, and calls through them:
//
//   const NormKernels& kernels = *active_kernels().norm;
//   parallel_for(N, grain, [&](std::int64_t begin, std::int64_t end) {
//     kernels.rms_norm_forward(...);
//   });
#pragma once

namespace attnkit {
enum class CpuIsa;  // core/cpu_features.h
}  // namespace attnkit

namespace attnkit::cpu {

struct NormKernels;

// Every family's table, for one ISA.
struct KernelTables {
  const NormKernels* norm;
};

// The tables of the ISA in use (active_cpu_isa()).
const KernelTables& active_kernels();
// The tables of `isa`, one of supported_cpu_isas().
const KernelTables& kernels_for(CpuIsa isa);

}  // namespace attnkit::cpu

// Transitional: the families not yet moved to csrc/cpu/isa.
#include "core/cpu_features.h"

namespace attnkit::cpu {

template <class Kernel>
Kernel pick_kernel(Kernel generic_kernel, Kernel avx2_kernel, Kernel avx512_kernel) {
  switch (active_cpu_isa()) {
    case CpuIsa::avx512: return avx512_kernel;
    case CpuIsa::avx2: return avx2_kernel;
    case CpuIsa::generic: break;
  }
  return generic_kernel;
}

}  // namespace attnkit::cpu

#ifdef ATTNKIT_HAVE_X86_KERNELS
#define ATTNKIT_ACTIVE_KERNEL(name) ::attnkit::cpu::pick_kernel(&generic::name, &avx2::name, &avx512::name)
#else
#define ATTNKIT_ACTIVE_KERNEL(name) (&generic::name)
#endif
