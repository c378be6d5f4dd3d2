// The softmax kernels of one ISA (see isa.h).
#include "cpu/isa/isa.h"

#include "cpu/softmax.h"
#include "cpu/softmax_kernels.h"

namespace attnkit::cpu::isa::ATTNKIT_ISA {

const SoftmaxKernels softmax_table = {
    softmax_kernels::softmax_forward<Vec>,
    softmax_kernels::softmax_backward<Vec>,
};

}  // namespace attnkit::cpu::isa::ATTNKIT_ISA
