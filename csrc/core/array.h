// Array: the n-dimensional buffer every op takes and returns. It has a shape,
// a dtype, a device and shared storage; its layout is always contiguous and
// row-major, so a kernel needs only a pointer and sizes. Views that keep
// contiguity (reshape, slicing along the first dimension) share the storage.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace attnkit {

enum class DType : std::uint8_t { float32, float16, bfloat16, int32, int64, bool_, int8 };

std::size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);
DType dtype_from_name(const std::string& name);  // "float32", ... ; ValueError otherwise
bool dtype_is_floating(DType dtype);

struct Device {
  enum class Kind : std::uint8_t { cpu, cuda };
  Kind kind = Kind::cpu;
  int index = 0;

  static Device cpu() { return Device{Kind::cpu, 0}; }
  static Device parse(const std::string& text);  // "cpu", "cuda", "cuda:1"
  std::string str() const;
  bool operator==(const Device& other) const { return kind == other.kind && index == other.index; }
  bool operator!=(const Device& other) const { return !(*this == other); }
};

using Shape = std::vector<std::int64_t>;
std::string shape_string(const Shape& shape);  // "[2, 3]"

// Size arithmetic that cannot overflow. Every count of elements or bytes
// derived from sizes a caller gave is computed through these, so that no
// product or sum wraps around: a wrapped size allocates a small block that a
// kernel then writes far past.
//
// One array spans at most kMaxArrayBytes, the largest int64, so that its
// byte count and every offset into it fit std::int64_t, std::size_t and
// Python's Py_ssize_t alike.
constexpr std::int64_t kMaxArrayBytes = std::numeric_limits<std::int64_t>::max();

// a * b and a + b for a, b >= 0: false, leaving *result alone, when the exact
// result exceeds the int64 range.
bool multiply_fits(std::int64_t a, std::int64_t b, std::int64_t* result);
bool add_fits(std::int64_t a, std::int64_t b, std::int64_t* result);
// The same, throwing ValueError ("op: argument 'argument' expected a size below
// 2^63, ...") when it does not fit.
std::int64_t checked_multiply(std::int64_t a, std::int64_t b, const char* op, const char* argument);
std::int64_t checked_add(std::int64_t a, std::int64_t b, const char* op, const char* argument);

// The number of elements of shape[begin, end) (default: all of it): 0 when
// any size there is 0, however large the others; ValueError for a negative
// size or a count of 2^63 or more.
std::int64_t shape_numel(const Shape& shape);
std::int64_t shape_numel(const Shape& shape, std::size_t begin, std::size_t end);
// Row-major strides in elements. An array with no elements has no element to
// place, and the products of its other sizes may not fit int64: its strides
// are all 1.
std::vector<std::int64_t> contiguous_strides(const Shape& shape);
// The bytes of an array of this shape and dtype; ValueError for a negative
// size, MemoryError (saying how many bytes were asked for) beyond kMaxArrayBytes.
std::size_t array_nbytes(const Shape& shape, DType dtype, Device device);

// A block of memory and who frees it. Storage made by attnkit comes from the
// caching allocator; storage borrowed from numpy or a DLPack producer keeps its
// owner alive through `release` and never frees the memory itself.
class Storage {
 public:
  Storage(void* data, std::size_t nbytes, Device device, std::function<void(void*)> release);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  static std::shared_ptr<Storage> allocate(std::size_t nbytes, Device device);

  void* data() const { return data_; }
  std::size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_;
  std::size_t nbytes_;
  Device device_;
  std::function<void(void*)> release_;
};

class Array {
 public:
  Array() = default;
  Array(std::shared_ptr<Storage> storage, std::size_t byte_offset, Shape shape, DType dtype);

  // Uninitialized memory from the allocator.
  static Array empty(const Shape& shape, DType dtype, Device device = Device::cpu());
  static Array zeros(const Shape& shape, DType dtype, Device device = Device::cpu());

  const Shape& shape() const { return shape_; }
  std::int64_t dim(int axis) const;  // negative axes count from the end
  int ndim() const { return static_cast<int>(shape_.size()); }
  std::int64_t numel() const { return numel_; }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device() : Device::cpu(); }
  std::size_t itemsize() const { return dtype_size(dtype_); }
  std::size_t nbytes() const { return static_cast<std::size_t>(numel_) * itemsize(); }
  bool defined() const { return storage_ != nullptr; }
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  std::size_t byte_offset() const { return byte_offset_; }

  void* raw_data() const;
  template <typename T>
  T* data() const {
    return static_cast<T*>(raw_data());
  }

  // A view with another shape and the same number of elements; one entry may
  // be -1 and is inferred.
  Array reshape(const Shape& shape) const;
  // Rows [start, stop) along the first dimension, as a view.
  Array slice_rows(std::int64_t start, std::int64_t stop) const;
  // A new array with its own storage and the same contents.
  Array copy() const;

  std::string describe() const;  // "float32[2, 3] on cpu"

 private:
  std::shared_ptr<Storage> storage_;
  std::size_t byte_offset_ = 0;
  Shape shape_;
  std::int64_t numel_ = 0;
  DType dtype_ = DType::float32;
};

}  // namespace attnkit
