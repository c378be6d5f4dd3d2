#include "cpu/norm.h"

#include <vector>

#include "core/threading.h"
#include "cpu/dispatch.h"

namespace attnkit::cpu {

namespace {

// Rows go to threads in chunks of at least ~16K elements: below that a
// parallel region costs more than it saves.
std::int64_t rows_per_chunk(std::int64_t C) {
  return C >= 16384 ? 1 : 16384 / C;
}

// The weight and bias gradients are summed over fixed blocks of rows, one
// partial sum per block (compensated: a sum and its rounding errors, [2, C]),
// and the partials are then added in block order. The blocks depend on N
// alone, never on the thread count, which is what makes the result the same
// bits for any number of threads. At least 16 rows per block keep the
// partials' extra traffic small next to the rows'; at most 256 blocks bound
// the partials' memory (256 x 2C floats per gradient) and still feed 256
// threads.
constexpr std::int64_t kMinRowsPerBlock = 16;
constexpr std::int64_t kMaxRowBlocks = 256;

std::int64_t row_block_count(std::int64_t N) {
  const std::int64_t blocks = (N + kMinRowsPerBlock - 1) / kMinRowsPerBlock;
  return blocks < 1 ? 1 : blocks > kMaxRowBlocks ? kMaxRowBlocks : blocks;
}

// Calls body(block, first_row, end_row) for every block, in parallel.
template <class Body>
void for_each_row_block(std::int64_t N, std::int64_t C, std::int64_t blocks, const Body& body) {
  const std::int64_t elements_per_block = (N / blocks) * C;
  const std::int64_t grain = elements_per_block >= 16384 ? 1 : 16384 / (elements_per_block + 1) + 1;
  parallel_for(blocks, grain, [&](std::int64_t first_block, std::int64_t end_block) {
    for (std::int64_t b = first_block; b < end_block; ++b) body(b, N * b / blocks, N * (b + 1) / blocks);
  });
}

// out[c] = the sum over blocks b of partials[b] (each [2, C]: sums, then their
// errors), added in the order b = 0, 1, ... with TwoSum as in row_reduction.h,
// the errors apart, and rounded once.
void add_partials(float* out, const float* partials, std::int64_t blocks, std::int64_t C) {
  parallel_for(C, 4096, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t c = begin; c < end; ++c) {
      float sum = 0.0f;
      float error = 0.0f;
      for (std::int64_t b = 0; b < blocks; ++b) {
        const float value = partials[2 * b * C + c];
        const float value_error = partials[(2 * b + 1) * C + c];
        const float total = sum + value;
        const float value_part = total - sum;
        error += ((sum - (total - value_part)) + (value - value_part)) + value_error;
        sum = total;
      }
      out[c] = sum - sum == 0.0f ? sum + error : sum;  // an infinite sum has NaN errors
    }
  });
}

}  // namespace

void layer_norm_forward(float* y, float* mean, float* rstd, const float* x, const float* weight, const float* bias,
                        std::int64_t N, std::int64_t C, float eps) {
  const NormKernels& kernels = *active_kernels().norm;
  parallel_for(N, rows_per_chunk(C), [&](std::int64_t begin, std::int64_t end) {
    kernels.layer_norm_forward(y + begin * C, mean + begin, rstd + begin, x + begin * C, weight, bias, end - begin, C,
                               eps);
  });
}

void add_layer_norm_forward(float* sum, float* y, float* mean, float* rstd, const float* x, const float* residual,
                            const float* weight, const float* bias, std::int64_t N, std::int64_t C, float eps) {
  const NormKernels& kernels = *active_kernels().norm;
  parallel_for(N, rows_per_chunk(C), [&](std::int64_t begin, std::int64_t end) {
    kernels.add_layer_norm_forward(sum + begin * C, y + begin * C, mean + begin, rstd + begin, x + begin * C,
                                   residual + begin * C, weight, bias, end - begin, C, eps);
  });
}

void layer_norm_backward(float* dx, float* dweight, float* dbias, const float* dy, const float* dsum, const float* x,
                         const float* weight, const float* mean, const float* rstd, std::int64_t N, std::int64_t C,
                         float eps) {
  const NormKernels& kernels = *active_kernels().norm;
  const std::int64_t blocks = row_block_count(N);
  // Zero-filled partial sums: [blocks, 2, C] for dweight, then for dbias.
  const std::int64_t partial_size = 2 * C;
  std::vector<float> partials(static_cast<std::size_t>(blocks * partial_size) * ((dweight ? 1 : 0) + (dbias ? 1 : 0)));
  float* dweight_partials = dweight ? partials.data() : nullptr;
  float* dbias_partials = dbias ? partials.data() + (dweight ? blocks * partial_size : 0) : nullptr;
  for_each_row_block(N, C, blocks, [&](std::int64_t b, std::int64_t begin, std::int64_t end) {
    kernels.layer_norm_backward(dx + begin * C, dweight ? dweight_partials + b * partial_size : nullptr,
                                dbias ? dbias_partials + b * partial_size : nullptr, dy + begin * C,
                                dsum ? dsum + begin * C : nullptr, x + begin * C, weight, mean + begin, rstd + begin,
                                end - begin, C, eps);
  });
  if (dweight) add_partials(dweight, dweight_partials, blocks, C);
  if (dbias) add_partials(dbias, dbias_partials, blocks, C);
}

void rms_norm_forward(float* y, float* rstd, const float* x, const float* weight, std::int64_t N, std::int64_t C,
                      float eps) {
  const NormKernels& kernels = *active_kernels().norm;
  parallel_for(N, rows_per_chunk(C), [&](std::int64_t begin, std::int64_t end) {
    kernels.rms_norm_forward(y + begin * C, rstd + begin, x + begin * C, weight, end - begin, C, eps);
  });
}

void rms_norm_backward(float* dx, float* dweight, const float* dy, const float* x, const float* weight,
                       const float* rstd, std::int64_t N, std::int64_t C, float eps) {
  const NormKernels& kernels = *active_kernels().norm;
  const std::int64_t blocks = row_block_count(N);
  std::vector<float> partials(dweight ? static_cast<std::size_t>(blocks * 2 * C) : 0);
  for_each_row_block(N, C, blocks, [&](std::int64_t b, std::int64_t begin, std::int64_t end) {
    kernels.rms_norm_backward(dx + begin * C, dweight ? partials.data() + b * 2 * C : nullptr, dy + begin * C,
                              x + begin * C, weight, rstd + begin, end - begin, C, eps);
  });
  if (dweight) add_partials(dweight, partials.data(), blocks, C);
}

}  // namespace attnkit::cpu
