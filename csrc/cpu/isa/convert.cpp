// The float32 <-> bfloat16 conversions of one ISA (see isa.h).
#include "cpu/isa/isa.h"

#include "cpu/convert.h"
#include "cpu/convert_kernels.h"

namespace attnkit::cpu::isa::ATTNKIT_ISA {

const ConvertKernels convert_table = {
    convert_kernels::float_to_bfloat16<Vec>,
    convert_kernels::bfloat16_to_float<Vec>,
};

}  // namespace attnkit::cpu::isa::ATTNKIT_ISA
