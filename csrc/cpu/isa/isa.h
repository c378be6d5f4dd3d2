// Included first by every file in csrc/cpu/isa/. CMake compiles each of those
// files once per ISA (attnkit_add_cpu_isa in CMakeLists.txt), with the ISA's
// flags and two definitions:
//   ATTNKIT_ISA      its name, which is also its namespace: a file defines
//                    everything in namespace attnkit::cpu::isa::ATTNKIT_ISA;
//   ATTNKIT_ISA_VEC  the Vec header its kernels are written in, included
//                    here (e.g. "cpu/vec/vec_avx512.h").
// A file defines one family's table (cpu/dispatch.h) from the family's
// templates over this Vec; the templates, instantiated over a Vec of this
// namespace, are this ISA's own functions.
//
// What a copy compiled with AVX flags may hold: leaf loops and their table,
// nothing else. No std:: containers, no threads, no static initializers (a
// table is a constant), and no inline function that is neither in the ISA's
// namespace nor a template over its Vec: the linker keeps one copy of an
// inline function that several objects define, and if it kept an AVX one,
// baseline code would run AVX on any CPU. CI checks the disassembly
// (.ci/check_baseline_isa.py).
#pragma once

#if !defined(ATTNKIT_ISA) || !defined(ATTNKIT_ISA_VEC)
#error "csrc/cpu/isa/ files are compiled once per ISA by CMake (attnkit_add_cpu_isa), which defines ATTNKIT_ISA"
#endif

#include ATTNKIT_ISA_VEC
#include "cpu/dispatch.h"

namespace attnkit::cpu::isa::ATTNKIT_ISA {

// This ISA's family tables (isa/<family>.cpp), gathered in isa/kernel_tables.cpp.
extern const ActivationKernels activation_table;
extern const AttentionKernels attention_table;
extern const ConvertKernels convert_table;
extern const ElementwiseKernels elementwise_table;
extern const GemmKernels gemm_table;
extern const GemmBf16Kernels gemm_bf16_table;
extern const LossKernels loss_table;
extern const NormKernels norm_table;
extern const OptimKernels optim_table;
extern const ProbeKernels probe_table;
extern const QuantizedKernels quantized_table;
extern const RandomKernels random_table;
extern const SoftmaxKernels softmax_table;
extern const KernelTables kernel_tables;

}  // namespace attnkit::cpu::isa::ATTNKIT_ISA
