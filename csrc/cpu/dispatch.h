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

struct ActivationKernels;
struct AttentionKernels;
struct ConvertKernels;
struct ElementwiseKernels;
struct GemmKernels;
struct GemmBf16Kernels;
struct LossKernels;
struct NormKernels;
struct OptimKernels;
struct ProbeKernels;
struct QuantizedKernels;
struct RandomKernels;
struct SoftmaxKernels;

// Every family's table, for one ISA.
struct KernelTables {
  const ActivationKernels* activation;
  const AttentionKernels* attention;
  const ConvertKernels* convert;
  const ElementwiseKernels* elementwise;
  const GemmKernels* gemm;
  const GemmBf16Kernels* gemm_bf16;
  const LossKernels* loss;
  const NormKernels* norm;
  const OptimKernels* optim;
  const ProbeKernels* probe;
  const QuantizedKernels* quantized;
  const RandomKernels* random;
  const SoftmaxKernels* softmax;
};

// The tables of the ISA in use (active_cpu_isa()).
const KernelTables& active_kernels();
// The tables of `isa`, one of supported_cpu_isas().
const KernelTables& kernels_for(CpuIsa isa);

}  // namespace attnkit::cpu
