// One ISA's family tables, for cpu/dispatch.cpp.
#include "cpu/isa/isa.h"

namespace attnkit::cpu::isa::ATTNKIT_ISA {

const KernelTables kernel_tables = {
    &activation_table, &attention_table, &convert_table, &elementwise_table, &gemm_table,
    &gemm_bf16_table,  &loss_table,      &norm_table,    &optim_table,       &probe_table,
    &quantized_table,  &random_table,    &softmax_table,
};

}  // namespace attnkit::cpu::isa::ATTNKIT_ISA
