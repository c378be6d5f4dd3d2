// The GEMM pieces of one ISA (see isa.h): the macro kernel, packing and decode
// path of gemm_kernels.h, with this ISA's register tile. The cache blocks are
// chosen at run time from the machine's caches and this tile (gemm.cpp).
#include "cpu/isa/isa.h"

#include "cpu/gemm.h"
#include "cpu/gemm_bf16_kernels.h"
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

// The bf16 tier: the best this ISA's flags allow (see gemm_bf16_kernels.h).
namespace bf16 = gemm_bf16_kernels;
#if defined(__AMX_TILE__) && defined(__AMX_BF16__)
const GemmBf16Kernels gemm_bf16_table = {
    {bf16::kAmxRows, bf16::kAmxColumns},
    bf16::kAmxDepth,
    2,
    bf16::pack_a_rows<Vec>,
    bf16::pack_b_pairs<Vec, bf16::kAmxDepth>,
    bf16::macro_kernel_amx<Vec>,
    bf16::decode<Vec>,
};
#elif defined(__AVX512BF16__)
static_assert(Vec::width == 16, "the AVX512-BF16 tile is written for 16-float vectors");
const GemmBf16Kernels gemm_bf16_table = {
    {kTileRows, kTileVectors * Vec::width},
    2,
    2,
    bf16::pack_a_pairs<Vec>,
    bf16::pack_b_pairs<Vec, 2>,
    bf16::macro_kernel_pairs<Vec, kTileRows, kTileVectors>,
    bf16::decode<Vec>,
};
#else
const GemmBf16Kernels gemm_bf16_table = {
    {kTileRows, kTileVectors * Vec::width},
    1,
    4,
    bf16::pack_a_widened<Vec>,
    bf16::pack_b_widened<Vec>,
    bf16::macro_kernel_widened<Vec, kTileRows, kTileVectors>,
    bf16::decode<Vec>,
};
#endif

}  // namespace attnkit::cpu::isa::ATTNKIT_ISA
