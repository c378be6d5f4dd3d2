#include "core/cpu_features.h"

#include <atomic>

#include "core/errors.h"

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <cpuid.h>
#define ATTNKIT_X86_CPU 1
#endif

namespace attnkit {
namespace {

struct X86Features {
  bool avx2_fma = false;
  bool avx512 = false;  // F + BW + DQ + VL
};

#ifdef ATTNKIT_X86_CPU
X86Features detect_x86() {
  X86Features f;
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  const bool osxsave = ecx & (1u << 27);
  const bool avx = ecx & (1u << 28);
  const bool fma = ecx & (1u << 12);
  const bool f16c = ecx & (1u << 29);
  if (!osxsave || !avx) return f;
  // XCR0 says which register files the OS saves on a context switch: SSE and
  // AVX state (bits 1, 2) for ymm; opmask, upper zmm and zmm16-31 (bits 5-7)
  // for AVX-512. Without them the instructions exist but are unusable.
  unsigned xcr0_lo, xcr0_hi;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  const bool os_ymm = (xcr0_lo & 0x6) == 0x6;
  const bool os_zmm = (xcr0_lo & 0xE6) == 0xE6;
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  const bool avx2 = ebx & (1u << 5);
  const bool avx512f = ebx & (1u << 16);
  const bool avx512dq = ebx & (1u << 17);
  const bool avx512bw = ebx & (1u << 30);
  const bool avx512vl = ebx & (1u << 31);
  f.avx2_fma = os_ymm && avx2 && fma && f16c;
  f.avx512 = f.avx2_fma && os_zmm && avx512f && avx512dq && avx512bw && avx512vl;
  return f;
}
#endif

// Whether this build has kernels for `isa`: CMake lists the ISAs it compiled
// in ATTNKIT_CPU_ISAS, as X(generic)X(avx2)...
bool compiled(CpuIsa isa) {
  switch (isa) {
#define X(name) \
  case CpuIsa::name: return true;
    ATTNKIT_CPU_ISAS
#undef X
    default: return false;
  }
}

bool cpu_can_run(CpuIsa isa) {
  if (!compiled(isa)) return false;
#ifdef ATTNKIT_X86_CPU
  static const X86Features features = detect_x86();
#else
  const X86Features features;  // none of the x86 ISAs
#endif
  switch (isa) {
    case CpuIsa::generic: return true;
    case CpuIsa::avx2: return features.avx2_fma;
    case CpuIsa::avx512: return features.avx512;
  }
  return false;
}

std::atomic<CpuIsa>& active() {
  static std::atomic<CpuIsa> isa{best_cpu_isa()};
  return isa;
}

}  // namespace

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::generic: return "generic";
    case CpuIsa::avx2: return "avx2";
    case CpuIsa::avx512: return "avx512";
  }
  return "?";
}

std::vector<CpuIsa> compiled_cpu_isas() {
  std::vector<CpuIsa> isas;
  for (CpuIsa isa : kCpuIsas)
    if (compiled(isa)) isas.push_back(isa);
  return isas;
}

std::string known_cpu_isa_names() {
  std::string names;
  for (CpuIsa isa : kCpuIsas) names += std::string(names.empty() ? "" : ", ") + cpu_isa_name(isa);
  return names;
}

std::vector<CpuIsa> supported_cpu_isas() {
  std::vector<CpuIsa> isas;
  for (CpuIsa isa : kCpuIsas)
    if (cpu_can_run(isa)) isas.push_back(isa);
  return isas;
}

CpuIsa best_cpu_isa() {
  return supported_cpu_isas().back();
}

CpuIsa active_cpu_isa() {
  return active().load(std::memory_order_relaxed);
}

void select_cpu_isa(const std::string& name) {
  if (name.empty() || name == "auto") {
    active().store(best_cpu_isa());
    return;
  }
  for (CpuIsa isa : kCpuIsas) {
    if (name != cpu_isa_name(isa)) continue;
    if (!cpu_can_run(isa)) {
      std::string have;
      for (CpuIsa s : supported_cpu_isas()) have += std::string(have.empty() ? "" : ", ") + cpu_isa_name(s);
      throw RuntimeError("ATTNKIT_CPU_ISA=" + name + ": this CPU (or this build) cannot run " + name +
                         " kernels; available here: " + have);
    }
    active().store(isa);
    return;
  }
  throw_value_error("ATTNKIT_CPU_ISA", "name", "one of auto, " + known_cpu_isa_names(), "'" + name + "'");
}

}  // namespace attnkit
