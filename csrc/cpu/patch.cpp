#include "cpu/patch.h"

#include <algorithm>
#include <cstring>

#include "core/threading.h"

namespace attnkit::cpu {
namespace {

// One task is one row of patches of one image (B * H/p tasks); each copies
// p-float runs between the image's rows and the patches' rows. Forward and
// inverse are the same walk with the copy's direction swapped.
template <bool kToPatches>
void copy_patches(float* patches, float* images, std::int64_t B, std::int64_t C, std::int64_t H, std::int64_t W,
                  std::int64_t p) {
  const std::int64_t grid_rows = H / p, grid_columns = W / p, patch_length = C * p * p;
  const std::size_t run_bytes = static_cast<std::size_t>(p) * sizeof(float);
  const std::int64_t grain = std::max<std::int64_t>(1, 16384 / std::max<std::int64_t>(1, C * p * W));
  parallel_for(B * grid_rows, grain, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t task = begin; task < end; ++task) {
      const std::int64_t b = task / grid_rows, gy = task % grid_rows;
      for (std::int64_t gx = 0; gx < grid_columns; ++gx) {
        float* patch = patches + ((b * grid_rows + gy) * grid_columns + gx) * patch_length;
        for (std::int64_t c = 0; c < C; ++c)
          for (std::int64_t i = 0; i < p; ++i) {
            float* pixels = images + ((b * C + c) * H + gy * p + i) * W + gx * p;
            float* run = patch + (c * p + i) * p;
            if (kToPatches) std::memcpy(run, pixels, run_bytes);
            else std::memcpy(pixels, run, run_bytes);
          }
      }
    }
  });
}

}  // namespace

void patchify(float* patches, const float* images, std::int64_t B, std::int64_t C, std::int64_t H, std::int64_t W,
              std::int64_t p) {
  copy_patches<true>(patches, const_cast<float*>(images), B, C, H, W, p);
}

void unpatchify(float* images, const float* patches, std::int64_t B, std::int64_t C, std::int64_t H, std::int64_t W,
                std::int64_t p) {
  copy_patches<false>(const_cast<float*>(patches), images, B, C, H, W, p);
}

}  // namespace attnkit::cpu
