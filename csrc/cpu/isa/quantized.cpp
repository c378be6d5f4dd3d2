// The int8-weight kernels of one ISA (see isa.h).
#include "cpu/isa/isa.h"

#include "cpu/quantized.h"
#include "cpu/quantized_kernels.h"

namespace attnkit::cpu::isa::ATTNKIT_ISA {

const QuantizedKernels quantized_table = {
    quantized_kernels::decode_int8<Vec>,
    quantized_kernels::dequantize_int8_rows<Vec>,
};

}  // namespace attnkit::cpu::isa::ATTNKIT_ISA
