// The cross-entropy kernels of one ISA (see isa.h).
#include "cpu/isa/isa.h"

#include "cpu/loss.h"
#include "cpu/loss_kernels.h"

namespace attnkit::cpu::isa::ATTNKIT_ISA {

const LossKernels loss_table = {
    loss_kernels::cross_entropy_forward<Vec>,
    loss_kernels::cross_entropy_backward<Vec>,
};

}  // namespace attnkit::cpu::isa::ATTNKIT_ISA
