// One ISA's family tables, for cpu/dispatch.cpp.
#include "cpu/isa/isa.h"

namespace attnkit::cpu::isa::ATTNKIT_ISA {

const KernelTables kernel_tables = {
    &norm_table,
};

}  // namespace attnkit::cpu::isa::ATTNKIT_ISA
