// Attention row operations compiled with the avx512 flags.
#include "cpu/attention.h"
#include "cpu/attention_kernels.h"
#include "cpu/vec/vec_avx512.h"

namespace attnkit::cpu::avx512 {

void online_softmax_columns(float* s, std::int64_t lds, std::int64_t n, int columns, std::int64_t j0, const float* lo,
                            const float* hi, const float* key_blocked, float* running_max, float* running_sum,
                            float* out, std::int64_t ldo, std::int64_t d) {
  attention_kernels::online_softmax_columns<Vec>(s, lds, n, columns, j0, lo, hi, key_blocked, running_max, running_sum,
                                                 out, ldo, d);
}

void softmax_backward_tile(float* s, float* dp, std::int64_t ld, int rows, std::int64_t n, std::int64_t j0,
                           const std::int64_t* lo, const std::int64_t* hi, const float* key_blocked, const float* lse,
                           const float* delta) {
  attention_kernels::softmax_backward_tile<Vec>(s, dp, ld, rows, n, j0, lo, hi, key_blocked, lse, delta);
}

void row_dot(float* delta, const float* a, std::int64_t lda, const float* b, std::int64_t ldb, std::int64_t rows,
             std::int64_t d) {
  attention_kernels::row_dot<Vec>(delta, a, lda, b, ldb, rows, d);
}

void decode_partial(float* acc, float* row_max, float* row_sum, float* scores, const float* q, int rows, int kv_heads,
                    const float* k, const float* v, std::int64_t ldk, std::int64_t ldv, std::int64_t j0,
                    std::int64_t j1, std::int64_t d, float scale, const std::int64_t* lo, const std::int64_t* hi,
                    const float* key_blocked) {
  attention_kernels::decode_partial<Vec>(acc, row_max, row_sum, scores, q, rows, kv_heads, k, v, ldk, ldv, j0, j1, d,
                                         scale, lo, hi, key_blocked);
}

}  // namespace attnkit::cpu::avx512
