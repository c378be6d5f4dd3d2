// The normalization kernels of one ISA (see isa.h).
#include "cpu/isa/isa.h"

#include "cpu/norm.h"
#include "cpu/norm_kernels.h"

namespace attnkit::cpu::isa::ATTNKIT_ISA {

const NormKernels norm_table = {
    norm_kernels::layer_norm_forward<Vec>,  norm_kernels::add_layer_norm_forward<Vec>,
    norm_kernels::layer_norm_backward<Vec>, norm_kernels::rms_norm_forward<Vec>,
    norm_kernels::rms_norm_backward<Vec>,
};

}  // namespace attnkit::cpu::isa::ATTNKIT_ISA
