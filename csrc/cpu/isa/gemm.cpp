// The GEMM pieces of one ISA (see isa.h): the macro kernel, packing and decode
// path of gemm_kernels.h, with this ISA's register tile and cache blocks.
#include "cpu/isa/isa.h"

#include "cpu/gemm.h"
#include "cpu/gemm_kernels.h"

namespace attnkit::cpu::isa::ATTNKIT_ISA {

namespace {

static_assert(Vec::width == 1 || Vec::width == 8 || Vec::width == 16,
              "a new vector width needs its register tile and cache blocks here");

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

// Cache blocks, measured on a Zen 4 core (32 KiB L1d, 1 MiB L2, 32 MiB L3):
//  - KC: the depth of one pass. Each pass reads and writes the C tile once,
//    so a deeper pass means fewer trips of C through the caches; the kc x NR
//    sliver of B it reuses across the A slivers should stay close (L1, or L2
//    with the hardware prefetcher streaming it). AVX2: 256 (a 16 KiB sliver,
//    in L1). AVX-512: 384 (48 KiB, streamed from L2) beat 192 by 5-15% on one
//    thread at the Transformer shapes: with K = 768 it halves the passes.
//  - MC: the packed A block, MC*KC*4 bytes (144 x 384: 216 KiB), stays in L2
//    while the B slivers stream past it; it also fits Zen 1's 512 KiB L2.
//  - NC: the packed B panel, KC*NC*4 bytes, comes from L3.
constexpr GemmBlocking kBlocking = Vec::width == 16  ? GemmBlocking{144, 384, 4096}
                                   : Vec::width == 8 ? GemmBlocking{144, 256, 4096}
                                                     : GemmBlocking{128, 256, 4096};

}  // namespace

const GemmKernels gemm_table = {
    {kTileRows, kTileVectors * Vec::width},
    kBlocking,
    gemm_kernels::macro_kernel<Vec, kTileRows, kTileVectors>,
    gemm_kernels::pack_a<Vec>,
    gemm_kernels::pack_b<Vec>,
    gemm_kernels::decode<Vec>,
    gemm_kernels::epilogue_rows<Vec>,
};

}  // namespace attnkit::cpu::isa::ATTNKIT_ISA
