// Image patches for the Vision Transformer: the checked, public C++ entry points.
#pragma once

#include <cstdint>

#include "core/array.h"

namespace attnkit::ops {

// images float32 [B, C, H, W], H and W multiples of patch_size ->
// patches float32 [B, (H / p) (W / p), C p p]: the patches in row-major order
// of their grid, each flattened (channel, row, column), the order in which a
// Conv2d weight [D, C, p, p] flattens, so that patch_embedding is
// patches @ weight.reshape(D, C p p)^T.
Array patchify(const Array& images, std::int64_t patch_size);

// The inverse permutation (patchify's backward): patches float32
// [B, (H / p) (W / p), C p p] -> images float32 [B, C, H, W].
Array unpatchify(const Array& patches, std::int64_t channels, std::int64_t height, std::int64_t width,
                 std::int64_t patch_size);

}  // namespace attnkit::ops
