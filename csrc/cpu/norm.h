// CPU normalization kernels: LayerNorm, residual-add + LayerNorm, RMSNorm.
// The entry points split rows over attnkit's threads and hand each block of rows
// to the kernel of the active ISA. Weight and bias gradients are sums over
// rows; they are accumulated over fixed blocks of rows (chosen from N alone)
// and the blocks' partial sums are added in block order, so every result is
// the same, bit for bit, for any thread count.
#pragma once

#include <cstdint>

namespace attnkit::cpu {

// y[N, C] = (x - mean) * rstd * weight[C] + bias[C], with mean[N] and
// rstd[N] = 1 / sqrt(var + eps) of each row of x[N, C]. weight and bias may be
// null (no scaling, no shift).
void layer_norm_forward(float* y, float* mean, float* rstd, const float* x, const float* weight, const float* bias,
                        std::int64_t N, std::int64_t C, float eps);
// sum[N, C] = x + residual, and y[N, C], mean[N], rstd[N] = layer_norm(sum).
void add_layer_norm_forward(float* sum, float* y, float* mean, float* rstd, const float* x, const float* residual,
                            const float* weight, const float* bias, std::int64_t N, std::int64_t C, float eps);
// dx[N, C] (+ dsum[N, C] when not null), dweight[C] and dbias[C] (each
// skipped when null) from dy[N, C], the input x[N, C], the saved mean, rstd
// and the forward's eps.
void layer_norm_backward(float* dx, float* dweight, float* dbias, const float* dy, const float* dsum, const float* x,
                         const float* weight, const float* mean, const float* rstd, std::int64_t N, std::int64_t C,
                         float eps);
// y[N, C] = x * rstd * weight[C], rstd[N] = 1 / sqrt(mean(x^2) + eps); weight may be null.
void rms_norm_forward(float* y, float* rstd, const float* x, const float* weight, std::int64_t N, std::int64_t C,
                      float eps);
// dx[N, C] and dweight[C] (skipped when null); eps as in the forward.
void rms_norm_backward(float* dx, float* dweight, const float* dy, const float* x, const float* weight,
                       const float* rstd, std::int64_t N, std::int64_t C, float eps);

// The kernels of one ISA (cpu/dispatch.h), over `rows` consecutive rows,
// single-threaded. The backward kernels add their rows' weight and bias
// gradients into *_partial[2, C] (sums and their rounding errors, see
// row_reduction.h).
struct NormKernels {
  void (*layer_norm_forward)(float* y, float* mean, float* rstd, const float* x, const float* weight, const float* bias,
                             std::int64_t rows, std::int64_t C, float eps);
  void (*add_layer_norm_forward)(float* sum, float* y, float* mean, float* rstd, const float* x, const float* residual,
                                 const float* weight, const float* bias, std::int64_t rows, std::int64_t C, float eps);
  void (*layer_norm_backward)(float* dx, float* dweight_partial, float* dbias_partial, const float* dy,
                              const float* dsum, const float* x, const float* weight, const float* mean,
                              const float* rstd, std::int64_t rows, std::int64_t C, float eps);
  void (*rms_norm_forward)(float* y, float* rstd, const float* x, const float* weight, std::int64_t rows,
                           std::int64_t C, float eps);
  void (*rms_norm_backward)(float* dx, float* dweight_partial, const float* dy, const float* x, const float* weight,
                            const float* rstd, std::int64_t rows, std::int64_t C, float eps);
};

}  // namespace attnkit::cpu
