#include "cpu/activation.h"

#include <algorithm>

#include "core/cpu_features.h"
#include "core/threading.h"
#include "cpu/vec/vec_generic.h"
#include "cpu/activation_kernels.h"

namespace attnkit::cpu {

namespace generic {
void gelu_forward(float* y, const float* x, std::int64_t n, bool tanh_form) {
  activation_kernels::gelu_forward<Vec>(y, x, n, tanh_form);
}
void gelu_backward(float* dx, const float* dy, const float* x, std::int64_t n, bool tanh_form) {
  activation_kernels::gelu_backward<Vec>(dx, dy, x, n, tanh_form);
}
}  // namespace generic

namespace {

// Elementwise kernels are split into blocks of whole cache lines, so no two
// threads write the same line and every chunk but the last is a whole number
// of vectors. Below ~16K elements a parallel region costs more than it saves.
constexpr std::int64_t kBlock = 256;
constexpr std::int64_t kGrainBlocks = 64;

template <typename Body>
void for_each_block(std::int64_t n, const Body& body) {
  const std::int64_t blocks = (n + kBlock - 1) / kBlock;
  parallel_for(blocks, kGrainBlocks, [&](std::int64_t b0, std::int64_t b1) {
    const std::int64_t begin = b0 * kBlock;
    const std::int64_t end = std::min(n, b1 * kBlock);
    body(begin, end - begin);
  });
}

}  // namespace

void gelu_forward(float* y, const float* x, std::int64_t n, GeluApproximation approximation) {
  const bool tanh_form = approximation == GeluApproximation::tanh;
  const CpuIsa isa = active_cpu_isa();
  for_each_block(n, [&](std::int64_t offset, std::int64_t count) {
    switch (isa) {
      case CpuIsa::avx512: avx512::gelu_forward(y + offset, x + offset, count, tanh_form); break;
      case CpuIsa::avx2: avx2::gelu_forward(y + offset, x + offset, count, tanh_form); break;
      case CpuIsa::generic: generic::gelu_forward(y + offset, x + offset, count, tanh_form); break;
    }
  });
}

void gelu_backward(float* dx, const float* dy, const float* x, std::int64_t n,
                   GeluApproximation approximation) {
  const bool tanh_form = approximation == GeluApproximation::tanh;
  const CpuIsa isa = active_cpu_isa();
  for_each_block(n, [&](std::int64_t offset, std::int64_t count) {
    switch (isa) {
      case CpuIsa::avx512:
        avx512::gelu_backward(dx + offset, dy + offset, x + offset, count, tanh_form);
        break;
      case CpuIsa::avx2:
        avx2::gelu_backward(dx + offset, dy + offset, x + offset, count, tanh_form);
        break;
      case CpuIsa::generic:
        generic::gelu_backward(dx + offset, dy + offset, x + offset, count, tanh_form);
        break;
    }
  });
}

}  // namespace attnkit::cpu
