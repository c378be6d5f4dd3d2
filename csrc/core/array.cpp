#include "core/array.h"

#include <cstring>
#include <limits>
#include <sstream>

#include "core/allocator.h"
#include "core/errors.h"

namespace attnkit {

std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::float32: return 4;
    case DType::float16: return 2;
    case DType::bfloat16: return 2;
    case DType::int32: return 4;
    case DType::int64: return 8;
    case DType::bool_: return 1;
  }
  return 0;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::float32: return "float32";
    case DType::float16: return "float16";
    case DType::bfloat16: return "bfloat16";
    case DType::int32: return "int32";
    case DType::int64: return "int64";
    case DType::bool_: return "bool";
  }
  return "?";
}

DType dtype_from_name(const std::string& name) {
  for (DType d : {DType::float32, DType::float16, DType::bfloat16, DType::int32, DType::int64, DType::bool_}) {
    if (name == dtype_name(d)) return d;
  }
  throw_value_error("dtype", "name", "one of float32, float16, bfloat16, int32, int64, bool", "'" + name + "'");
}

bool dtype_is_floating(DType dtype) {
  return dtype == DType::float32 || dtype == DType::float16 || dtype == DType::bfloat16;
}

Device Device::parse(const std::string& text) {
  if (text == "cpu") return Device::cpu();
  if (text == "cuda") return Device{Kind::cuda, 0};
  if (text.rfind("cuda:", 0) == 0 && text.size() > 5) {
    const std::string digits = text.substr(5);
    bool all_digits = digits.size() <= 4;
    for (char ch : digits) all_digits = all_digits && ch >= '0' && ch <= '9';
    if (all_digits) return Device{Kind::cuda, std::stoi(digits)};
  }
  throw_value_error("device", "device", "'cpu', 'cuda' or 'cuda:N'", "'" + text + "'");
}

std::string Device::str() const {
  return kind == Kind::cpu ? std::string("cpu") : "cuda:" + std::to_string(index);
}

std::string shape_string(const Shape& shape) {
  std::ostringstream out;
  out << "[";
  for (std::size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << "]";
  return out.str();
}

std::int64_t shape_numel(const Shape& shape) {
  std::int64_t n = 1;
  for (std::int64_t d : shape) {
    if (d < 0) throw_value_error("shape", "shape", "non-negative sizes", shape_string(shape));
    if (d != 0 && n > std::numeric_limits<std::int64_t>::max() / d)
      throw_value_error("shape", "shape", "fewer than 2^63 elements", shape_string(shape));
    n *= d;
  }
  return n;
}

Storage::Storage(void* data, std::size_t nbytes, Device device, std::function<void(void*)> release)
    : data_(data), nbytes_(nbytes), device_(device), release_(std::move(release)) {}

Storage::~Storage() {
  if (release_) release_(data_);
}

std::shared_ptr<Storage> Storage::allocate(std::size_t nbytes, Device device) {
  if (device.kind != Device::Kind::cpu)
    throw RuntimeError("attnkit was built without CUDA support; cannot allocate on " + device.str());
  void* data = cpu_allocate(nbytes);
  return std::make_shared<Storage>(data, nbytes, device, [nbytes](void* p) { cpu_free(p, nbytes); });
}

Array::Array(std::shared_ptr<Storage> storage, std::size_t byte_offset, Shape shape, DType dtype)
    : storage_(std::move(storage)),
      byte_offset_(byte_offset),
      shape_(std::move(shape)),
      numel_(shape_numel(shape_)),
      dtype_(dtype) {
  if (storage_ && byte_offset_ + nbytes() > storage_->nbytes())
    throw RuntimeError("Array: a view of " + describe() + " at byte offset " + std::to_string(byte_offset_) +
                       " does not fit its storage of " + std::to_string(storage_->nbytes()) + " bytes");
}

Array Array::empty(const Shape& shape, DType dtype, Device device) {
  const std::size_t nbytes = static_cast<std::size_t>(shape_numel(shape)) * dtype_size(dtype);
  return Array(Storage::allocate(nbytes, device), 0, shape, dtype);
}

Array Array::zeros(const Shape& shape, DType dtype, Device device) {
  Array out = empty(shape, dtype, device);
  std::memset(out.raw_data(), 0, out.nbytes());
  return out;
}

std::int64_t Array::dim(int axis) const {
  const int n = ndim();
  const int a = axis < 0 ? axis + n : axis;
  if (a < 0 || a >= n)
    throw_value_error("Array.dim", "axis", "an axis in [" + std::to_string(-n) + ", " + std::to_string(n) + ")",
                      std::to_string(axis));
  return shape_[a];
}

void* Array::raw_data() const {
  if (!storage_) return nullptr;
  return static_cast<char*>(storage_->data()) + byte_offset_;
}

Array Array::reshape(const Shape& shape) const {
  Shape resolved = shape;
  int inferred = -1;
  std::int64_t known = 1;
  for (std::size_t i = 0; i < resolved.size(); ++i) {
    if (resolved[i] == -1 && inferred < 0) {
      inferred = static_cast<int>(i);
    } else if (resolved[i] < 0) {
      throw_value_error("reshape", "shape", "non-negative sizes and at most one -1", shape_string(shape));
    } else {
      known *= resolved[i];
    }
  }
  if (inferred >= 0) {
    if (known == 0 || numel_ % known != 0)
      throw_value_error("reshape", "shape", "a shape compatible with " + shape_string(shape_), shape_string(shape));
    resolved[inferred] = numel_ / known;
  }
  if (shape_numel(resolved) != numel_)
    throw_value_error("reshape", "shape", std::to_string(numel_) + " elements like " + shape_string(shape_),
                      shape_string(shape));
  return Array(storage_, byte_offset_, resolved, dtype_);
}

Array Array::slice_rows(std::int64_t start, std::int64_t stop) const {
  if (ndim() == 0) throw_value_error("slice_rows", "self", "at least 1 dimension", describe());
  if (start < 0 || stop < start || stop > shape_[0])
    throw_value_error("slice_rows", "range", "0 <= start <= stop <= " + std::to_string(shape_[0]),
                      "[" + std::to_string(start) + ", " + std::to_string(stop) + ")");
  Shape sub = shape_;
  sub[0] = stop - start;
  const std::size_t row_bytes = shape_[0] == 0 ? 0 : nbytes() / static_cast<std::size_t>(shape_[0]);
  return Array(storage_, byte_offset_ + static_cast<std::size_t>(start) * row_bytes, sub, dtype_);
}

Array Array::copy() const {
  Array out = empty(shape_, dtype_, device());
  if (nbytes() > 0) std::memcpy(out.raw_data(), raw_data(), nbytes());
  return out;
}

std::string Array::describe() const {
  return std::string(dtype_name(dtype_)) + shape_string(shape_) + " on " + device().str();
}

}  // namespace attnkit
