// The Philox and dropout kernels of one ISA (see isa.h).
#include "cpu/isa/isa.h"

#include "cpu/random.h"
#include "cpu/random_kernels.h"

namespace attnkit::cpu::isa::ATTNKIT_ISA {

const RandomKernels random_table = {
    random_kernels::philox_block<VecU32>,
    random_kernels::random_bits<VecU32>,
    random_kernels::uniform<Vec, VecU32>,
    random_kernels::dropout<Vec, VecU32>,
};

}  // namespace attnkit::cpu::isa::ATTNKIT_ISA
