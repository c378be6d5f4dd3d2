// CPU instruction-set dispatch. The kernels in csrc/cpu/isa are compiled once
// per ISA, with its own flags; which ISA's kernels run is chosen once, when the
// module is imported, from CPUID and XGETBV (the CPU must have the instructions
// and the OS must save their registers). ATTNKIT_CPU_ISA forces a choice.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace attnkit {

// The tiers, each a superset of the one before it on every CPU that has it:
//   avx2         AVX2 + FMA + F16C (Haswell, Zen 1);
//   avx512       AVX-512 F + BW + DQ + VL (Skylake-server);
//   avx512_vnni  avx512 + AVX512-VNNI (Cascade Lake, Ice Lake): int8 dot
//                products (vpdpbusd) for dynamic quantization;
//   avx512_bf16  avx512_vnni + AVX512-BF16 (Cooper Lake, Sapphire Rapids,
//                Zen 4): bf16 dot products (vdpbf16ps). Every CPU with
//                AVX512-BF16 has VNNI, so the tier asks for both;
//   amx          avx512_bf16 + AMX tiles with bf16 (Sapphire Rapids), usable
//                only once Linux granted the tile state (ARCH_REQ_XCOMP_PERM).
enum class CpuIsa { generic, avx2, avx512, avx512_vnni, avx512_bf16, amx };
// Every ISA attnkit knows, the best last.
constexpr CpuIsa kCpuIsas[] = {CpuIsa::generic,     CpuIsa::avx2,        CpuIsa::avx512,
                               CpuIsa::avx512_vnni, CpuIsa::avx512_bf16, CpuIsa::amx};

// What this CPU (and the OS) can run, from CPUID and XGETBV, for the tiers and
// `attnkit info`. Each flag is usable, not only present: the OS saves the
// registers it needs (XCR0), and for AMX Linux granted this process the tile
// data state (arch_prctl(ARCH_REQ_XCOMP_PERM), asked for once, here).
struct CpuFeatures {
  bool avx2_fma = false;     // AVX2 + FMA + F16C
  bool avx512 = false;       // F + BW + DQ + VL
  bool avx512_vnni = false;  // vpdpbusd & co. on zmm (needs avx512)
  bool avx_vnni = false;     // the VEX forms on ymm (Alder Lake, Zen 5; needs avx2_fma)
  bool avx512_bf16 = false;  // vdpbf16ps, vcvtne2ps2bf16 (needs avx512)
  bool amx_tile = false;     // tile registers, granted by the OS
  bool amx_bf16 = false;     // tdpbf16ps (needs amx_tile)
  bool amx_int8 = false;     // tdpbssd & co. (needs amx_tile)
};
const CpuFeatures& cpu_features();
// The names of the features above this CPU has ("avx2", "avx512",
// "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16",
// "amx_int8"), in that order.
std::vector<std::string> cpu_feature_names();

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
// Selects by name (a name of kCpuIsas; "" or "auto" = best). Throws
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
