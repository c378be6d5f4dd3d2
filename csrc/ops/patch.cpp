#include "ops/patch.h"

#include <string>

#include "core/errors.h"
#include "cpu/patch.h"
#include "ops/checks.h"

namespace attnkit::ops {
namespace {

void check_patch_size(const char* op, std::int64_t patch_size) {
  if (patch_size < 1) throw_value_error(op, "patch_size", "an int >= 1", std::to_string(patch_size));
}

// H and W must be whole numbers of patches.
void check_divisible(const char* op, const char* argument, std::int64_t height, std::int64_t width,
                     std::int64_t patch_size) {
  if (height % patch_size != 0 || width % patch_size != 0)
    throw_value_error(op, argument, "an image size divisible by patch_size=" + std::to_string(patch_size),
                      std::to_string(height) + " x " + std::to_string(width));
}

}  // namespace

Array patchify(const Array& images, std::int64_t patch_size) {
  const char* op = "patchify";
  check_defined(op, "images", images);
  check_dtype(op, "images", images, DType::float32);
  check_cpu(op, "images", images);
  if (images.ndim() != 4)
    throw_value_error(op, "images", "a 4-d [batch, channels, height, width] array", shape_string(images.shape()));
  check_patch_size(op, patch_size);
  const std::int64_t B = images.dim(0), C = images.dim(1), H = images.dim(2), W = images.dim(3);
  check_divisible(op, "images", H, W, patch_size);
  const std::int64_t p = patch_size;
  Array patches = Array::empty({B, (H / p) * (W / p), checked_multiply(C, p * p, op, "images")}, DType::float32);
  cpu::patchify(patches.data<float>(), images.data<float>(), B, C, H, W, p);
  return patches;
}

Array unpatchify(const Array& patches, std::int64_t channels, std::int64_t height, std::int64_t width,
                 std::int64_t patch_size) {
  const char* op = "unpatchify";
  check_defined(op, "patches", patches);
  check_dtype(op, "patches", patches, DType::float32);
  check_cpu(op, "patches", patches);
  check_patch_size(op, patch_size);
  if (channels < 1 || height < 1 || width < 1)
    throw_value_error(op, "channels", "positive channels, height and width",
                      std::to_string(channels) + ", " + std::to_string(height) + ", " + std::to_string(width));
  check_divisible(op, "height", height, width, patch_size);
  const std::int64_t p = patch_size;
  const Shape expected{patches.ndim() > 0 ? patches.dim(0) : 0, checked_multiply(height / p, width / p, op, "height"),
                       checked_multiply(channels, checked_multiply(p, p, op, "patch_size"), op, "channels")};
  if (patches.ndim() != 3 || patches.shape() != expected)
    throw_value_error(op, "patches", "shape [batch, patches, channels * patch_size^2] = " + shape_string(expected),
                      shape_string(patches.shape()));
  const std::int64_t B = patches.dim(0);
  Array images = Array::empty({B, channels, height, width}, DType::float32);
  cpu::unpatchify(images.data<float>(), patches.data<float>(), B, channels, height, width, p);
  return images;
}

}  // namespace attnkit::ops
