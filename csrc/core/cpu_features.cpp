#include "core/cpu_features.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "core/errors.h"

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <cpuid.h>
#define ATTNKIT_X86_CPU 1
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace attnkit {
namespace {

#ifdef ATTNKIT_X86_CPU
// Linux's request for the AMX tile data state (arch/x86/include/uapi/asm/prctl.h):
// without it the first tile instruction faults. Granted to the whole process.
bool os_grants_amx_tiles() {
#if defined(__linux__)
  constexpr long kArchReqXcompPerm = 0x1023;
  constexpr long kXfeatureXtileData = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtileData) == 0;
#else
  return false;
#endif
}

CpuFeatures detect_x86() {
  CpuFeatures f;
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  const bool osxsave = ecx & (1u << 27);
  const bool avx = ecx & (1u << 28);
  const bool fma = ecx & (1u << 12);
  const bool f16c = ecx & (1u << 29);
  if (!osxsave || !avx) return f;
  // XCR0 says which register files the OS saves on a context switch: SSE and
  // AVX state (bits 1, 2) for ymm; opmask, upper zmm and zmm16-31 (bits 5-7)
  // for AVX-512; tile configuration and data (bits 17, 18) for AMX. Without
  // them the instructions exist but are unusable.
  unsigned xcr0_lo, xcr0_hi;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  const bool os_ymm = (xcr0_lo & 0x6) == 0x6;
  const bool os_zmm = (xcr0_lo & 0xE6) == 0xE6;
  const bool os_tiles = (xcr0_lo & 0x60000) == 0x60000;
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  const unsigned leaf7_subleaves = eax;
  const bool avx2 = ebx & (1u << 5);
  const bool avx512f = ebx & (1u << 16);
  const bool avx512dq = ebx & (1u << 17);
  const bool avx512bw = ebx & (1u << 30);
  const bool avx512vl = ebx & (1u << 31);
  const bool avx512_vnni = ecx & (1u << 11);
  const bool amx_bf16 = edx & (1u << 22);
  const bool amx_tile = edx & (1u << 24);
  const bool amx_int8 = edx & (1u << 25);
  bool avx_vnni = false, avx512_bf16 = false;
  if (leaf7_subleaves >= 1) {
    __cpuid_count(7, 1, eax, ebx, ecx, edx);
    avx_vnni = eax & (1u << 4);
    avx512_bf16 = eax & (1u << 5);
  }
  f.avx2_fma = os_ymm && avx2 && fma && f16c;
  f.avx512 = f.avx2_fma && os_zmm && avx512f && avx512dq && avx512bw && avx512vl;
  f.avx512_vnni = f.avx512 && avx512_vnni;
  f.avx_vnni = f.avx2_fma && avx_vnni;
  f.avx512_bf16 = f.avx512 && avx512_bf16;
  f.amx_tile = amx_tile && os_tiles && os_grants_amx_tiles();
  f.amx_bf16 = f.amx_tile && amx_bf16;
  f.amx_int8 = f.amx_tile && amx_int8;
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
  const CpuFeatures& f = cpu_features();
  switch (isa) {
    case CpuIsa::generic: return true;
    case CpuIsa::avx2: return f.avx2_fma;
    case CpuIsa::avx512: return f.avx512;
    case CpuIsa::avx512_vnni: return f.avx512_vnni;
    case CpuIsa::avx512_bf16: return f.avx512_vnni && f.avx512_bf16;
    case CpuIsa::amx: return f.avx512_vnni && f.avx512_bf16 && f.amx_bf16;
  }
  return false;
}

// One cache level as CPUID or sysfs describe it.
struct CacheLevel {
  std::int64_t bytes = 0;
  int ways = 0;
  int sharing = 1;
};

// Fills caches from the "deterministic cache parameters" leaf: 4 on Intel,
// 0x8000001D on AMD (the same layout). Each subleaf describes one cache:
// EAX[4:0] type (0 = no more, 1 = data, 2 = instruction, 3 = unified),
// EAX[7:5] level, EAX[25:14] logical CPUs sharing it - 1; EBX line size,
// partitions and ways (each - 1), ECX sets - 1.
bool caches_from_cpuid(CacheLevel (&levels)[4]) {
#ifdef ATTNKIT_X86_CPU
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx)) return false;
  const unsigned max_leaf = eax;
  char vendor[13] = {};
  std::memcpy(vendor, &ebx, 4);
  std::memcpy(vendor + 4, &edx, 4);
  std::memcpy(vendor + 8, &ecx, 4);
  unsigned leaf = 0;
  if (std::strcmp(vendor, "GenuineIntel") == 0 && max_leaf >= 4) {
    leaf = 4;
  } else if (std::strcmp(vendor, "AuthenticAMD") == 0 || std::strcmp(vendor, "HygonGenuine") == 0) {
    // 0x8000001D exists when CPUID 0x80000001 reports topology extensions.
    if (__get_cpuid_max(0x80000000u, nullptr) >= 0x8000001Du && __get_cpuid(0x80000001u, &eax, &ebx, &ecx, &edx) &&
        (ecx & (1u << 22)))
      leaf = 0x8000001Du;
  }
  if (leaf == 0) return false;
  bool found = false;
  for (unsigned index = 0; index < 16; ++index) {
    __cpuid_count(leaf, index, eax, ebx, ecx, edx);
    const unsigned type = eax & 0x1F;
    if (type == 0) break;
    const unsigned level = (eax >> 5) & 0x7;
    if (type == 2 || level < 1 || level > 3) continue;  // instruction caches
    CacheLevel& c = levels[level];
    c.ways = static_cast<int>(((ebx >> 22) & 0x3FF) + 1);
    const std::int64_t partitions = ((ebx >> 12) & 0x3FF) + 1;
    const std::int64_t line = (ebx & 0xFFF) + 1;
    c.bytes = std::int64_t(c.ways) * partitions * line * (std::int64_t(ecx) + 1);
    c.sharing = static_cast<int>(((eax >> 14) & 0xFFF) + 1);
    found = true;
  }
  return found && levels[1].bytes > 0 && levels[2].bytes > 0;
#else
  (void)levels;
  return false;
#endif
}

std::string read_line(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) return "";
  char buffer[256] = {};
  const bool ok = std::fgets(buffer, sizeof buffer, f) != nullptr;
  std::fclose(f);
  std::string text = ok ? buffer : "";
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

// "0-3,8-11" -> 8.
int count_cpu_list(const std::string& list) {
  int count = 0;
  const char* p = list.c_str();
  while (*p != '\0') {
    char* end = nullptr;
    const long first = std::strtol(p, &end, 10);
    if (end == p) break;
    long last = first;
    p = end;
    if (*p == '-') {
      last = std::strtol(p + 1, &end, 10);
      p = end;
    }
    if (last >= first) count += static_cast<int>(last - first + 1);
    if (*p == ',') ++p;
  }
  return count > 0 ? count : 1;
}

// Linux's description of cpu0's caches: index*/level, type, size ("48K"),
// ways_of_associativity, shared_cpu_list.
bool caches_from_sysfs(CacheLevel (&levels)[4]) {
  bool found = false;
  for (int index = 0; index < 16; ++index) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) + "/";
    const std::string level_text = read_line(dir + "level");
    if (level_text.empty()) break;
    const int level = std::atoi(level_text.c_str());
    if (read_line(dir + "type") == "Instruction" || level < 1 || level > 3) continue;
    const std::string size = read_line(dir + "size");
    std::int64_t bytes = std::atoll(size.c_str());
    if (!size.empty() && size.back() == 'K') bytes <<= 10;
    if (!size.empty() && size.back() == 'M') bytes <<= 20;
    if (bytes <= 0) continue;
    CacheLevel& c = levels[level];
    c.bytes = bytes;
    c.ways = std::atoi(read_line(dir + "ways_of_associativity").c_str());
    c.sharing = count_cpu_list(read_line(dir + "shared_cpu_list"));
    found = true;
  }
  return found && levels[1].bytes > 0 && levels[2].bytes > 0;
}

CpuCaches detect_caches() {
  CacheLevel levels[4];
  const char* source = "cpuid";
  if (!caches_from_cpuid(levels)) {
    for (CacheLevel& c : levels) c = CacheLevel{};
    source = "sysfs";
    if (!caches_from_sysfs(levels)) return CpuCaches{32 << 10, 1 << 20, 8 << 20, 8, 1, 8, "default"};
  }
  return CpuCaches{levels[1].bytes,   levels[2].bytes,   levels[3].bytes, levels[1].ways,
                   levels[2].sharing, levels[3].sharing, source};
}

std::atomic<CpuIsa>& active() {
  static std::atomic<CpuIsa> isa{best_cpu_isa()};
  return isa;
}

}  // namespace

const CpuFeatures& cpu_features() {
#ifdef ATTNKIT_X86_CPU
  static const CpuFeatures features = detect_x86();
#else
  static const CpuFeatures features;  // none of the x86 features
#endif
  return features;
}

std::vector<std::string> cpu_feature_names() {
  const CpuFeatures& f = cpu_features();
  const std::pair<bool, const char*> all[] = {
      {f.avx2_fma, "avx2"},     {f.avx512, "avx512"},           {f.avx512_vnni, "avx512_vnni"},
      {f.avx_vnni, "avx_vnni"}, {f.avx512_bf16, "avx512_bf16"}, {f.amx_tile, "amx_tile"},
      {f.amx_bf16, "amx_bf16"}, {f.amx_int8, "amx_int8"},
  };
  std::vector<std::string> names;
  for (const auto& [present, name] : all)
    if (present) names.emplace_back(name);
  return names;
}

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::generic: return "generic";
    case CpuIsa::avx2: return "avx2";
    case CpuIsa::avx512: return "avx512";
    case CpuIsa::avx512_vnni: return "avx512_vnni";
    case CpuIsa::avx512_bf16: return "avx512_bf16";
    case CpuIsa::amx: return "amx";
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

const CpuCaches& cpu_caches() {
  static const CpuCaches caches = detect_caches();
  return caches;
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
