// The AdamW update of one ISA (see isa.h).
#include "cpu/isa/isa.h"

#include "cpu/optim.h"
#include "cpu/optim_kernels.h"

namespace attnkit::cpu::isa::ATTNKIT_ISA {

const OptimKernels optim_table = {
    optim_kernels::adamw_update<Vec>,
};

}  // namespace attnkit::cpu::isa::ATTNKIT_ISA
