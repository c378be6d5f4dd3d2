// Picks the active ISA's variant of a kernel (baseline translation units only).
// Builds without the x86 kernel folders (aarch64) have only the generic
// variants, so the x86 names must not appear in them: write
// ATTNKIT_ACTIVE_KERNEL(name) inside namespace attnkit::cpu, never avx2::name.
#pragma once

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
