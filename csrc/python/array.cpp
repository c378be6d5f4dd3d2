// Array <-> Python: the buffer protocol (zero-copy numpy views), construction
// from numpy (zero-copy or copied), and DLPack in both directions.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <memory>

#include "core/array.h"
#include "core/dlpack.h"
#include "core/errors.h"
#include "python/bindings.h"

namespace py = pybind11;

namespace attnkit::python {
namespace {

// numpy buffer format for each dtype numpy has; bfloat16 has none.
const char* buffer_format(DType dtype) {
  switch (dtype) {
    case DType::float32: return "f";
    case DType::float16: return "e";
    case DType::int32: return "i";
    case DType::int64: return "q";
    case DType::bool_: return "?";
    case DType::int8: return "b";
    case DType::bfloat16: return nullptr;
  }
  return nullptr;
}

DType dtype_of_numpy(const py::dtype& dt) {
  const char kind = dt.kind();
  const auto size = dt.itemsize();
  if (kind == 'f' && size == 4) return DType::float32;
  if (kind == 'f' && size == 2) return DType::float16;
  if (kind == 'i' && size == 4) return DType::int32;
  if (kind == 'i' && size == 8) return DType::int64;
  if (kind == 'b' && size == 1) return DType::bool_;
  if (kind == 'i' && size == 1) return DType::int8;
  throw_type_error("from_numpy", "array", "dtype float32, float16, int32, int64, bool or int8",
                   std::string(py::str(dt)));
}

// Keeps a Python object alive for as long as an Array borrows its memory. The
// last Array may die on a thread without the GIL (inside a kernel call), so
// the release takes it.
std::function<void(void*)> keep_alive(py::object owner) {
  auto holder = std::make_shared<py::object>(std::move(owner));
  return [holder](void*) mutable {
    py::gil_scoped_acquire gil;
    holder.reset();
  };
}

Array array_from_numpy(const py::array& source, const std::string& as_dtype, bool copy) {
  const DType source_dtype = dtype_of_numpy(source.dtype());
  DType dtype = source_dtype;
  if (!as_dtype.empty()) {
    dtype = dtype_from_name(as_dtype);
    if (dtype_size(dtype) != dtype_size(source_dtype))
      throw_type_error("from_numpy", "as_dtype", "a dtype of the source's item size", as_dtype);
  }
  Shape shape(source.shape(), source.shape() + source.ndim());
  const bool c_contiguous = (source.flags() & py::array::c_style) != 0;
  if (copy || !c_contiguous) {
    if (!copy)
      throw_value_error("from_numpy", "array", "a C-contiguous array (zero-copy)",
                        "a non-contiguous one; use attnkit.tensor() to copy it");
    py::array contiguous = py::array::ensure(source, py::array::c_style | py::array::forcecast);
    Array out = Array::empty(shape, dtype);
    if (out.nbytes() > 0) std::memcpy(out.raw_data(), contiguous.data(), out.nbytes());
    return out;
  }
  // attnkit hands out writable views (Tensor.numpy()), so sharing read-only
  // memory (np.frombuffer over bytes, a read-only memmap) would let a write
  // corrupt an immutable object or fault.
  if (!source.writeable())
    throw_value_error("from_numpy", "array", "a writable array (zero-copy)",
                      "a read-only one; use attnkit.tensor() to copy it");
  const std::size_t nbytes = static_cast<std::size_t>(source.nbytes());
  auto storage = std::make_shared<Storage>(const_cast<void*>(source.data()), nbytes, Device::cpu(), keep_alive(source));
  return Array(storage, 0, shape, dtype);
}

py::buffer_info array_buffer(const Array& a) {
  if (a.device().kind != Device::Kind::cpu)
    throw_value_error("numpy", "array", "an array on cpu", "one on " + a.device().str());
  const char* format = buffer_format(a.dtype());
  if (format == nullptr)
    throw_type_error("numpy", "array", "a dtype numpy has (numpy has no bfloat16)", dtype_name(a.dtype()));
  std::vector<py::ssize_t> shape(a.shape().begin(), a.shape().end());
  std::vector<py::ssize_t> strides;
  for (std::int64_t stride : contiguous_strides(a.shape()))
    strides.push_back(static_cast<py::ssize_t>(stride * static_cast<std::int64_t>(a.itemsize())));
  return py::buffer_info(a.raw_data(), static_cast<py::ssize_t>(a.itemsize()), format,
                         static_cast<py::ssize_t>(shape.size()), shape, strides);
}

// ---------------------------------------------------------------- DLPack ---

DLDataType dlpack_dtype(DType dtype) {
  switch (dtype) {
    case DType::float32: return {kDLFloat, 32, 1};
    case DType::float16: return {kDLFloat, 16, 1};
    case DType::bfloat16: return {kDLBfloat, 16, 1};
    case DType::int32: return {kDLInt, 32, 1};
    case DType::int64: return {kDLInt, 64, 1};
    case DType::bool_: return {kDLBool, 8, 1};
    case DType::int8: return {kDLInt, 8, 1};
  }
  return {kDLFloat, 32, 1};
}

DType dtype_from_dlpack(DLDataType t) {
  if (t.lanes == 1) {
    if (t.code == kDLFloat && t.bits == 32) return DType::float32;
    if (t.code == kDLFloat && t.bits == 16) return DType::float16;
    if (t.code == kDLBfloat && t.bits == 16) return DType::bfloat16;
    if (t.code == kDLInt && t.bits == 32) return DType::int32;
    if (t.code == kDLInt && t.bits == 64) return DType::int64;
    if (t.code == kDLBool && t.bits == 8) return DType::bool_;
    if (t.code == kDLInt && t.bits == 8) return DType::int8;
  }
  throw_type_error("from_dlpack", "tensor", "dtype float32, float16, bfloat16, int32, int64, bool or int8",
                   "DLPack type code " + std::to_string(t.code) + ", " + std::to_string(t.bits) + " bits, " +
                       std::to_string(t.lanes) + " lanes");
}

// What an exported DLPack tensor owns: the Array (keeping its storage alive)
// and the shape/strides arrays the DLTensor points into.
struct ExportContext {
  Array array;
  std::vector<std::int64_t> shape;
  std::vector<std::int64_t> strides;
};

template <class Managed>
void fill_dltensor(Managed* managed, ExportContext* context) {
  const Array& a = context->array;
  context->shape = a.shape();
  context->strides = contiguous_strides(a.shape());
  DLTensor& t = managed->dl_tensor;
  t.data = a.raw_data();
  t.device = {kDLCPU, 0};
  t.ndim = a.ndim();
  t.dtype = dlpack_dtype(a.dtype());
  t.shape = context->shape.data();
  t.strides = context->strides.data();
  t.byte_offset = 0;
  managed->manager_ctx = context;
}

template <class Managed>
void delete_exported(Managed* managed) {
  delete static_cast<ExportContext*>(managed->manager_ctx);
  delete managed;
}

// Capsule destructors: a capsule that still has its original name was never
// consumed, so its tensor is ours to free.
void destroy_legacy_capsule(PyObject* capsule) {
  if (PyCapsule_IsValid(capsule, "dltensor")) {
    auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule, "dltensor"));
    if (managed && managed->deleter) managed->deleter(managed);
  }
}

void destroy_versioned_capsule(PyObject* capsule) {
  if (PyCapsule_IsValid(capsule, "dltensor_versioned")) {
    auto* managed = static_cast<DLManagedTensorVersioned*>(PyCapsule_GetPointer(capsule, "dltensor_versioned"));
    if (managed && managed->deleter) managed->deleter(managed);
  }
}

py::object to_dlpack(const Array& a, bool versioned) {
  if (a.device().kind != Device::Kind::cpu)
    throw_value_error("__dlpack__", "self", "an array on cpu", "one on " + a.device().str());
  auto* context = new ExportContext{a, {}, {}};
  PyObject* capsule = nullptr;
  if (versioned) {
    auto* managed = new DLManagedTensorVersioned{};
    managed->version = {kDLPackMajorVersion, kDLPackMinorVersion};
    managed->deleter = &delete_exported<DLManagedTensorVersioned>;
    managed->flags = 0;
    fill_dltensor(managed, context);
    capsule = PyCapsule_New(managed, "dltensor_versioned", &destroy_versioned_capsule);
    if (!capsule) delete_exported(managed);
  } else {
    auto* managed = new DLManagedTensor{};
    managed->deleter = &delete_exported<DLManagedTensor>;
    fill_dltensor(managed, context);
    capsule = PyCapsule_New(managed, "dltensor", &destroy_legacy_capsule);
    if (!capsule) delete_exported(managed);
  }
  if (!capsule) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(capsule);
}

// Wraps a consumed DLTensor as an Array without copying; `release` calls the
// producer's deleter once the last Array using it is gone.
Array array_from_dltensor(const DLTensor& t, std::function<void(void*)> release) {
  // Take ownership first, so every early error below still frees the tensor.
  auto owner = std::make_shared<Storage>(nullptr, 0, Device::cpu(), std::move(release));
  if (t.device.device_type != kDLCPU && t.device.device_type != kDLCUDAHost)
    throw_value_error(
        "from_dlpack", "tensor", "a tensor in CPU memory",
        "DLPack device type " + std::to_string(t.device.device_type) + " (attnkit has no CUDA backend in this build)");
  const DType dtype = dtype_from_dlpack(t.dtype);
  if (t.ndim < 0) throw_value_error("from_dlpack", "tensor", "ndim >= 0", std::to_string(t.ndim));
  Shape shape(t.shape, t.shape + t.ndim);
  const std::size_t nbytes = array_nbytes(shape, dtype, Device::cpu());
  // Strides must describe the compact row-major layout; a size-1 dimension
  // may carry any stride, and an empty tensor any strides at all (it has no
  // element to place).
  if (t.strides != nullptr && nbytes > 0) {
    std::int64_t expected = 1;
    for (int i = t.ndim - 1; i >= 0; --i) {
      if (shape[i] != 1 && t.strides[i] != expected)
        throw_value_error("from_dlpack", "tensor", "a C-contiguous tensor",
                          "strides that are not row-major; make it contiguous first");
      expected *= shape[i];
    }
  }
  // (An empty tensor's data may be null, and null + offset is undefined.)
  void* data = t.data == nullptr ? nullptr : static_cast<char*>(t.data) + t.byte_offset;
  // The storage's release keeps `owner` (and so the producer's deleter) alive.
  auto storage = std::make_shared<Storage>(data, nbytes, Device::cpu(), [owner](void*) mutable { owner.reset(); });
  return Array(storage, 0, shape, dtype);
}

Array from_dlpack_capsule(py::capsule capsule) {
  PyObject* object = capsule.ptr();
  if (PyCapsule_IsValid(object, "dltensor_versioned")) {
    auto* managed = static_cast<DLManagedTensorVersioned*>(PyCapsule_GetPointer(object, "dltensor_versioned"));
    if (managed->version.major > kDLPackMajorVersion)
      throw_value_error("from_dlpack", "tensor", "DLPack major version <= 1", std::to_string(managed->version.major));
    // Refused before the capsule is marked used, so it still frees its tensor.
    // (Shared read-only memory could be written through Tensor.numpy().)
    if (managed->flags & kDLPackFlagReadOnly)
      throw_value_error("from_dlpack", "tensor", "a writable tensor (zero-copy)",
                        "one its producer marked read-only; copy it first");
    PyCapsule_SetName(object, "used_dltensor_versioned");
    return array_from_dltensor(managed->dl_tensor, [managed](void*) {
      py::gil_scoped_acquire gil;
      if (managed->deleter) managed->deleter(managed);
    });
  }
  if (PyCapsule_IsValid(object, "dltensor")) {
    auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(object, "dltensor"));
    PyCapsule_SetName(object, "used_dltensor");
    return array_from_dltensor(managed->dl_tensor, [managed](void*) {
      py::gil_scoped_acquire gil;
      if (managed->deleter) managed->deleter(managed);
    });
  }
  throw_value_error("from_dlpack", "capsule", "an unconsumed DLPack capsule",
                    "a capsule that was consumed already or is not DLPack");
}

}  // namespace

void bind_array(py::module_& m) {
  py::class_<Array>(m, "Array", py::buffer_protocol(),
                    "A contiguous n-d buffer with a dtype and a device (attnkit's core type).")
      .def_buffer(&array_buffer)
      .def_property_readonly("shape", [](const Array& a) { return py::tuple(py::cast(a.shape())); })
      .def_property_readonly("dtype", [](const Array& a) { return std::string(dtype_name(a.dtype())); })
      .def_property_readonly("device", [](const Array& a) { return a.device().str(); })
      .def_property_readonly("nbytes", &Array::nbytes)
      .def_property_readonly("numel", &Array::numel)
      .def_property_readonly("itemsize", &Array::itemsize)
      .def_property_readonly("data_ptr", [](const Array& a) { return reinterpret_cast<std::uintptr_t>(a.raw_data()); })
      .def("reshape", &Array::reshape, py::arg("shape"))
      .def("copy", &Array::copy)
      .def(
          "view_as_dtype",
          [](const Array& a, const std::string& name) {
            const DType dtype = dtype_from_name(name);
            if (dtype_size(dtype) != a.itemsize())
              throw_type_error("view_as_dtype", "dtype", "a dtype of item size " + std::to_string(a.itemsize()), name);
            return Array(a.storage(), a.byte_offset(), a.shape(), dtype);
          },
          py::arg("dtype"), "Reinterprets the bytes as another dtype of the same size.")
      .def("to_dlpack", &to_dlpack, py::arg("versioned"))
      .def("__repr__", [](const Array& a) { return "<attnkit._C.Array " + a.describe() + ">"; });

  m.def(
      "empty", [](const Shape& shape, const std::string& dtype) { return Array::empty(shape, dtype_from_name(dtype)); },
      py::arg("shape"), py::arg("dtype"));
  m.def(
      "zeros", [](const Shape& shape, const std::string& dtype) { return Array::zeros(shape, dtype_from_name(dtype)); },
      py::arg("shape"), py::arg("dtype"));
  m.def("array_from_numpy", &array_from_numpy, py::arg("array"), py::arg("as_dtype") = "", py::arg("copy") = false,
        "Wraps a numpy array (zero-copy when copy=False and it is C-contiguous).");
  m.def("array_from_dlpack_capsule", &from_dlpack_capsule, py::arg("capsule"));
}

}  // namespace attnkit::python
