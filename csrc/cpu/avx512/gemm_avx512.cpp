// GEMM macro kernel for AVX-512: 12 x 32 register tiles. 32 zmm registers:
// 24 accumulators (12 rows x 2 vectors), 2 for B, 1 for the A broadcast.
#include "cpu/vec/vec_avx512.h"
#include "cpu/gemm_kernels.h"

namespace attnkit::cpu::avx512 {

constexpr int kRows = 12;
constexpr int kVectors = 2;

GemmKernelShape gemm_kernel_shape() { return {kRows, kVectors * Vec::width}; }

void gemm_macro_kernel(const GemmMacroTile& tile) {
  gemm_kernels::macro_kernel<Vec, kRows, kVectors>(tile);
}

void gemm_decode(const GemmDecodeRange& r) {
  if (r.transpose_b)
    gemm_kernels::decode_dot_columns<Vec>(r.c, r.ldc, r.a, r.lda, r.b, r.ldb, r.m, r.k, r.col0, r.col1,
                                          r.alpha, r.beta);
  else
    gemm_kernels::decode_columns<Vec>(r.c, r.ldc, r.a, r.lda, r.b, r.ldb, r.m, r.k,
                                                      r.col0, r.col1, r.alpha, r.beta);
}

void gemm_epilogue_rows(float* c, std::int64_t ldc, std::int64_t m, std::int64_t n, const float* bias,
                        GemmActivation activation, float* pre_activation) {
  gemm_kernels::epilogue_rows<Vec>(c, ldc, m, n, bias, activation, pre_activation);
}

}  // namespace attnkit::cpu::avx512
