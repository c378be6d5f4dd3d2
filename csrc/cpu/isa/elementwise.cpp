// The float arithmetic and sum kernels of one ISA (see isa.h).
#include "cpu/isa/isa.h"

#include "cpu/elementwise.h"
#include "cpu/elementwise_kernels.h"

namespace attnkit::cpu::isa::ATTNKIT_ISA {

const ElementwiseKernels elementwise_table = {
    elementwise_kernels::binary_tile<Vec>,
    elementwise_kernels::sum_contiguous<Vec>,
    elementwise_kernels::sum_columns<Vec>,
};

}  // namespace attnkit::cpu::isa::ATTNKIT_ISA
