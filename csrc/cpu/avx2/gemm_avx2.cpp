// GEMM macro kernel for AVX2 + FMA: 6 x 16 register tiles. 16 ymm registers:
// 12 accumulators (6 rows x 2 vectors), 2 for B, 1 for the A broadcast.
#include "cpu/gemm_kernels.h"
#include "cpu/vec/vec_avx2.h"

namespace attnkit::cpu::avx2 {

constexpr int kRows = 6;
constexpr int kVectors = 2;

GemmKernelShape gemm_kernel_shape() {
  return {kRows, kVectors * Vec::width};
}

void gemm_macro_kernel(const GemmMacroTile& tile) {
  gemm_kernels::macro_kernel<Vec, kRows, kVectors>(tile);
}

void gemm_decode(const GemmDecodeRange& r) {
  gemm_kernels::decode<Vec>(r);
}

void gemm_pack_a(float* packed, const float* a, std::int64_t lda, bool transpose, std::int64_t m, std::int64_t kc,
                 int mr) {
  gemm_kernels::pack_a<Vec>(packed, a, lda, transpose, m, kc, mr);
}

void gemm_pack_b(float* packed, const float* b, std::int64_t ldb, bool transpose, std::int64_t n, std::int64_t kc,
                 int nr) {
  gemm_kernels::pack_b<Vec>(packed, b, ldb, transpose, n, kc, nr);
}

void gemm_epilogue_rows(float* c, std::int64_t ldc, std::int64_t m, std::int64_t n, const float* bias,
                        GemmActivation activation, float* pre_activation) {
  gemm_kernels::epilogue_rows<Vec>(c, ldc, m, n, bias, activation, pre_activation);
}

}  // namespace attnkit::cpu::avx2
