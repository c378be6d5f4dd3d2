// The activation kernels of one ISA (see isa.h).
#include "cpu/isa/isa.h"

#include "cpu/activation.h"
#include "cpu/activation_kernels.h"

namespace attnkit::cpu::isa::ATTNKIT_ISA {

const ActivationKernels activation_table = {
    activation_kernels::gelu_forward<Vec>,   activation_kernels::gelu_backward<Vec>,
    activation_kernels::relu_forward<Vec>,   activation_kernels::relu_backward<Vec>,
    activation_kernels::silu_forward<Vec>,   activation_kernels::silu_backward<Vec>,
    activation_kernels::tanh_forward<Vec>,   activation_kernels::tanh_backward<Vec>,
    activation_kernels::swiglu_forward<Vec>, activation_kernels::swiglu_backward<Vec>,
};

}  // namespace attnkit::cpu::isa::ATTNKIT_ISA
