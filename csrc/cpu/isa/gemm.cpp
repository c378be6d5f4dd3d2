// The GEMM pieces of one ISA (see isa.h): the macro kernel, packing and decode
// path of gemm_kernels.h, with this ISA's register tile. The cache blocks are
// chosen at run time from the machine's caches and this tile (gemm.cpp).
#include "cpu/isa/isa.h"

#include "cpu/gemm.h"
#include "cpu/gemm_kernels.h"

namespace attnkit::cpu::isa::ATTNKIT_ISA {

namespace {

static_assert(Vec::width == 1 || Vec::width == 8 || Vec::width == 16,
              "a new vector width needs its register tile here");

// The register tile, MR rows x NV vectors of C held in registers across the
// k loop:
//  - AVX-512 (16 floats, 32 zmm registers): 12 x 2, 24 accumulators, 2
//    registers for B and 1 for the A broadcast;
//  - AVX2 (8 floats, 16 ymm registers): 6 x 2, 12 accumulators, 2 for B, 1
//    for A;
//  - generic (1 float): 4 x 8 scalars, which the compiler vectorizes over the
//    8 columns with the baseline ISA's registers.
constexpr int kTileRows = Vec::width == 16 ? 12 : Vec::width == 8 ? 6 : 4;
constexpr int kTileVectors = Vec::width == 1 ? 8 : 2;

}  // namespace

const GemmKernels gemm_table = {
    {kTileRows, kTileVectors * Vec::width},
    gemm_kernels::macro_kernel<Vec, kTileRows, kTileVectors>,
    gemm_kernels::pack_a<Vec>,
    gemm_kernels::pack_b<Vec>,
    gemm_kernels::decode<Vec>,
    gemm_kernels::epilogue_rows<Vec>,
};

}  // namespace attnkit::cpu::isa::ATTNKIT_ISA
