#include "core/array.h"

#include <cstdio>
#include <cstring>
#include <limits>
#include <new>
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
    case DType::int8: return 1;
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
    case DType::int8: return "int8";
  }
  return "?";
}

DType dtype_from_name(const std::string& name) {
  for (DType d :
       {DType::float32, DType::float16, DType::bfloat16, DType::int32, DType::int64, DType::bool_, DType::int8}) {
    if (name == dtype_name(d)) return d;
  }
  throw_value_error("dtype", "name", "one of float32, float16, bfloat16, int32, int64, bool, int8", "'" + name + "'");
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

bool multiply_fits(std::int64_t a, std::int64_t b, std::int64_t* result) {
  std::int64_t product;
  if (__builtin_mul_overflow(a, b, &product)) return false;
  *result = product;
  return true;
}

bool add_fits(std::int64_t a, std::int64_t b, std::int64_t* result) {
  std::int64_t sum;
  if (__builtin_add_overflow(a, b, &sum)) return false;
  *result = sum;
  return true;
}

std::int64_t checked_multiply(std::int64_t a, std::int64_t b, const char* op, const char* argument) {
  std::int64_t product;
  if (!multiply_fits(a, b, &product))
    throw_value_error(op, argument, "sizes whose product is below 2^63", std::to_string(a) + " x " + std::to_string(b));
  return product;
}

std::int64_t checked_add(std::int64_t a, std::int64_t b, const char* op, const char* argument) {
  std::int64_t sum;
  if (!add_fits(a, b, &sum))
    throw_value_error(op, argument, "sizes whose sum is below 2^63", std::to_string(a) + " + " + std::to_string(b));
  return sum;
}

namespace {

void check_sizes_not_negative(const Shape& shape) {
  for (std::int64_t d : shape)
    if (d < 0) throw_value_error("shape", "shape", "non-negative sizes", shape_string(shape));
}

bool has_zero_size(const Shape& shape, std::size_t begin, std::size_t end) {
  for (std::size_t i = begin; i < end; ++i)
    if (shape[i] == 0) return true;
  return false;
}

// A byte count for a message: exact up to 2^128, with a readable size after it
// ("4398046511104 bytes (4.0 TiB)").
std::string bytes_text(unsigned __int128 bytes, bool beyond_128_bits) {
  if (beyond_128_bits) return "more than 2^128 bytes";
  std::string digits;
  unsigned __int128 rest = bytes;
  do {
    digits.insert(digits.begin(), static_cast<char>('0' + static_cast<int>(rest % 10)));
    rest /= 10;
  } while (rest != 0);
  static const char* const units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"};
  long double scaled = static_cast<long double>(bytes);
  int unit = 0;
  while (scaled >= 1024.0L && unit < 8) {
    scaled /= 1024.0L;
    ++unit;
  }
  if (unit == 0) return digits + " bytes";
  char readable[32];
  std::snprintf(readable, sizeof(readable), "%.1Lf %s", scaled, units[unit]);
  return digits + " bytes (" + readable + ")";
}

std::string array_request(const Shape& shape, DType dtype, Device device) {
  return std::string(dtype_name(dtype)) + shape_string(shape) + " on " + device.str();
}

}  // namespace

std::int64_t shape_numel(const Shape& shape) {
  return shape_numel(shape, 0, shape.size());
}

std::int64_t shape_numel(const Shape& shape, std::size_t begin, std::size_t end) {
  check_sizes_not_negative(shape);
  if (has_zero_size(shape, begin, end)) return 0;
  std::int64_t n = 1;
  for (std::size_t i = begin; i < end; ++i)
    if (!multiply_fits(n, shape[i], &n))
      throw_value_error("shape", "shape", "fewer than 2^63 elements", shape_string(shape));
  return n;
}

std::vector<std::int64_t> contiguous_strides(const Shape& shape) {
  std::vector<std::int64_t> strides(shape.size(), 1);
  if (shape_numel(shape) == 0) return strides;
  for (std::size_t d = shape.size(); d-- > 1;) strides[d - 1] = strides[d] * shape[d];
  return strides;
}

std::size_t array_nbytes(const Shape& shape, DType dtype, Device device) {
  check_sizes_not_negative(shape);
  if (has_zero_size(shape, 0, shape.size())) return 0;
  // The exact count in 128 bits, so that the message can say it.
  unsigned __int128 bytes = dtype_size(dtype);
  bool beyond_128_bits = false;
  for (std::int64_t d : shape)
    beyond_128_bits = beyond_128_bits || __builtin_mul_overflow(bytes, static_cast<unsigned __int128>(d), &bytes);
  if (beyond_128_bits || bytes > static_cast<unsigned __int128>(kMaxArrayBytes))
    throw MemoryError("cannot allocate " + array_request(shape, dtype, device) + ": " +
                      bytes_text(bytes, beyond_128_bits) + ", more than one array can span (2^63 - 1 bytes)");
  return static_cast<std::size_t>(bytes);
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
  std::int64_t bytes;
  if (!multiply_fits(numel_, static_cast<std::int64_t>(itemsize()), &bytes))
    throw_value_error("Array", "shape", "at most 2^63 - 1 bytes", describe());
  if (storage_ && (byte_offset_ > storage_->nbytes() || nbytes() > storage_->nbytes() - byte_offset_))
    throw RuntimeError("Array: a view of " + describe() + " at byte offset " + std::to_string(byte_offset_) +
                       " does not fit its storage of " + std::to_string(storage_->nbytes()) + " bytes");
}

Array Array::empty(const Shape& shape, DType dtype, Device device) {
  const std::size_t nbytes = array_nbytes(shape, dtype, device);
  std::shared_ptr<Storage> storage;
  try {
    storage = Storage::allocate(nbytes, device);
  } catch (const std::bad_alloc&) {
    throw MemoryError("cannot allocate " + array_request(shape, dtype, device) + ": " + bytes_text(nbytes, false) +
                      ", more than the system could give");
  }
  return Array(std::move(storage), 0, shape, dtype);
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
