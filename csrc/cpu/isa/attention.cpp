// The register-tiled leaf loops of flash-style attention of one ISA (see
// isa.h), with this ISA's tile shapes.
#include "cpu/isa/isa.h"

#include "cpu/attention.h"
#include "cpu/attention_kernels.h"

namespace attnkit::cpu::isa::ATTNKIT_ISA {

namespace {

static_assert(Vec::width == 1 || Vec::width == 8 || Vec::width == 16,
              "a new vector width needs its attention tiles here");

// The register tiles, chosen for the register file (32 zmm, 16 ymm; the
// generic Vec is one float, which the compiler vectorizes over NV):
//  - scores, S^T = K Q^T: kScoreRows keys x kScoreVectors vectors of queries
//    held in accumulators, plus kScoreVectors registers of Q^T and one
//    broadcast of K (AVX-512: 8 x 3 = 24 accumulators; AVX2: 6 x 2 = 12);
//  - products, C += A B: up to product_accumulators accumulators in
//    chunks of product_vectors vectors of C's row (the head dimension), and
//    as many rows as fit (AVX-512: 6 x 4 at D = 64, 12 x 2 at D = 32).
// The query block, kQueryBlock = 48 columns of scores, is a multiple of every
// one of these tiles' widths and heights (16, 3 x 16, 6, 8, 12), so a block
// has no column tail and a full query block no row tail.
constexpr int kScoreRows = Vec::width == 16 ? 8 : Vec::width == 8 ? 6 : 4;
constexpr int kScoreVectors = Vec::width == 16 ? 3 : Vec::width == 8 ? 2 : 8;
constexpr std::int64_t kQueryBlock = 48;
static_assert(kQueryBlock % (kScoreVectors * Vec::width) == 0, "the query block must hold whole score tiles");

struct ProductTiles {
  static constexpr int product_accumulators = Vec::width == 16 ? 24 : Vec::width == 8 ? 12 : 32;
  static constexpr int product_vectors = Vec::width == 16 ? 4 : Vec::width == 8 ? 2 : 8;
  static constexpr int product_max_rows = Vec::width == 1 ? 4 : 12;
};

}  // namespace

const AttentionKernels attention_table = {
    kQueryBlock,
    attention_kernels::block_scores<Vec, kScoreRows, kScoreVectors>,
    attention_kernels::block_product<Vec, ProductTiles>,
    attention_kernels::softmax_block<Vec>,
    attention_kernels::softmax_gradient_block<Vec>,
    attention_kernels::transpose_rows<Vec>,
    attention_kernels::normalize_rows<Vec>,
    attention_kernels::column_dot<Vec>,
    attention_kernels::decode_partial<Vec>,
};

}  // namespace attnkit::cpu::isa::ATTNKIT_ISA
