// CPU image patch kernels: patchify and its inverse, pure copies.
#pragma once

#include <cstdint>

namespace attnkit::cpu {

// patches [B, (H/p) (W/p), C p p] <- images [B, C, H, W] (H, W multiples of p).
void patchify(float* patches, const float* images, std::int64_t B, std::int64_t C, std::int64_t H, std::int64_t W,
              std::int64_t p);
// images [B, C, H, W] <- patches [B, (H/p) (W/p), C p p].
void unpatchify(float* images, const float* patches, std::int64_t B, std::int64_t C, std::int64_t H, std::int64_t W,
                std::int64_t p);

}  // namespace attnkit::cpu
