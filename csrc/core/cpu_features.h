// CPU instruction-set dispatch. The kernels in csrc/cpu/isa are compiled once
// per ISA, with its own flags; which ISA's kernels run is chosen once, when the
// module is imported, from CPUID and XGETBV (the CPU must have the instructions
// and the OS must save their registers). ATTNKIT_CPU_ISA forces a choice.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace attnkit {

enum class CpuIsa { generic, avx2, avx512 };
// Every ISA attnkit knows, the best last.
constexpr CpuIsa kCpuIsas[] = {CpuIsa::generic, CpuIsa::avx2, CpuIsa::avx512};

const char* cpu_isa_name(CpuIsa isa);
// ISAs this build has kernels for, whether or not this CPU can run them.
std::vector<CpuIsa> compiled_cpu_isas();
// "generic, avx2, avx512": kCpuIsas by name, for messages.
std::string known_cpu_isa_names();
// ISAs this build has kernels for and this CPU can run, best last.
std::vector<CpuIsa> supported_cpu_isas();
// The best supported ISA.
CpuIsa best_cpu_isa();
// The ISA kernels use now.
CpuIsa active_cpu_isa();
// Selects by name ("generic", "avx2", "avx512"; "" or "auto" = best). Throws
// ValueError for an unknown name and RuntimeError when the CPU or the build
// lacks it.
void select_cpu_isa(const std::string& name);

// The data caches one core sees, in bytes, and how many logical CPUs share
// each (the L3 is usually shared by a socket or a chiplet). Blocking for the
// caches (the GEMM's cache blocks) reads these instead of constants measured
// on one machine.
struct CpuCaches {
  std::int64_t l1d_bytes;
  std::int64_t l2_bytes;
  std::int64_t l3_bytes;  // 0 when there is none
  int l1d_ways;           // associativity (0 when unknown)
  int l2_sharing;         // logical CPUs sharing the L2
  int l3_sharing;
  const char* source;  // "cpuid", "sysfs" or "default" (nothing could be read)
};
// Detected once: CPUID leaf 4 on Intel, 0x8000001D on AMD, else Linux's
// /sys/devices/system/cpu/cpu0/cache, else typical sizes (32 KiB, 1 MiB, 8 MiB).
const CpuCaches& cpu_caches();

}  // namespace attnkit
