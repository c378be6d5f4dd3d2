// The float arithmetic and sum kernels compiled with the avx2 flags (see
// CMakeLists.txt); entered only when the CPU has avx2 (core/cpu_features.cpp).
#include "cpu/elementwise.h"
#include "cpu/elementwise_kernels.h"
#include "cpu/vec/vec_avx2.h"

namespace attnkit::cpu::avx2 {

void binary_tile(float* out, const float* a, const float* b, std::int64_t rows, std::int64_t columns,
                 std::int64_t out_row_stride, std::int64_t a_row_stride, std::int64_t b_row_stride, int a_step,
                 int b_step, BinaryOp op) {
  elementwise_kernels::binary_tile<Vec>(out, a, b, rows, columns, out_row_stride, a_row_stride, b_row_stride, a_step,
                                        b_step, op);
}

float sum_contiguous(const float* x, std::int64_t n) {
  return elementwise_kernels::sum_contiguous<Vec>(x, n);
}

void sum_columns(float* out, const float* x, std::int64_t rows, std::int64_t columns, std::int64_t row_stride) {
  elementwise_kernels::sum_columns<Vec>(out, x, rows, columns, row_stride);
}

}  // namespace attnkit::cpu::avx2
