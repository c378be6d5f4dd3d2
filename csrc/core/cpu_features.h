// CPU instruction-set dispatch. The kernels in csrc/cpu/isa are compiled once
// per ISA, with its own flags; which ISA's kernels run is chosen once, when the
// module is imported, from CPUID and XGETBV (the CPU must have the instructions
// and the OS must save their registers). ATTNKIT_CPU_ISA forces a choice.
#pragma once

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

}  // namespace attnkit
