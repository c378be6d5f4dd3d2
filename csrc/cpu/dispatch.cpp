#include "cpu/dispatch.h"

#include "core/cpu_features.h"

// Each ISA CMake compiled (ATTNKIT_CPU_ISAS: X(generic)X(avx2)...) defines its
// tables in isa/kernel_tables.cpp.
#define X(name)                            \
  namespace attnkit::cpu::isa::name {      \
  extern const KernelTables kernel_tables; \
  }
ATTNKIT_CPU_ISAS
#undef X

namespace attnkit::cpu {

const KernelTables& kernels_for(CpuIsa which) {
  switch (which) {
#define X(name) \
  case CpuIsa::name: return isa::name::kernel_tables;
    ATTNKIT_CPU_ISAS
#undef X
    default: break;
  }
  // Not compiled in this build: supported_cpu_isas() never offers it.
  return isa::generic::kernel_tables;
}

const KernelTables& active_kernels() {
  return kernels_for(active_cpu_isa());
}

}  // namespace attnkit::cpu
