// The row operations of flash-style attention of one ISA (see isa.h); the
// products between them run on the same ISA's GEMM table.
#include "cpu/isa/isa.h"

#include "cpu/attention.h"
#include "cpu/attention_kernels.h"

namespace attnkit::cpu::isa::ATTNKIT_ISA {

const AttentionKernels attention_table = {
    attention_kernels::online_softmax_columns<Vec>,
    attention_kernels::softmax_backward_tile<Vec>,
    attention_kernels::row_dot<Vec>,
    attention_kernels::decode_partial<Vec>,
};

}  // namespace attnkit::cpu::isa::ATTNKIT_ISA
