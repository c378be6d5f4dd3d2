#include "cpu/convert.h"

#include "core/threading.h"
#include "cpu/dispatch.h"

namespace attnkit::cpu {

namespace {
// Elements per task: a conversion moves 6 bytes per element, so a block of
// 16 Ki elements (96 KiB) is worth a thread's start.
constexpr std::int64_t kGrain = 1 << 14;
}  // namespace

void float_to_bfloat16(std::uint16_t* out, const float* in, std::int64_t n) {
  const ConvertKernels& kernels = *active_kernels().convert;
  parallel_for(n, kGrain, [&](std::int64_t begin, std::int64_t end) {
    kernels.float_to_bfloat16(out + begin, in + begin, end - begin);
  });
}

void bfloat16_to_float(float* out, const std::uint16_t* in, std::int64_t n) {
  const ConvertKernels& kernels = *active_kernels().convert;
  parallel_for(n, kGrain, [&](std::int64_t begin, std::int64_t end) {
    kernels.bfloat16_to_float(out + begin, in + begin, end - begin);
  });
}

}  // namespace attnkit::cpu
