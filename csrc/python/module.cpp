#include <pybind11/pybind11.h>

#include <new>

#include "core/errors.h"
#include "python/bindings.h"

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
  m.doc() = "attnkit's native kernels (CPU). Use the attnkit package, not this module.";

  // Registered translators are tried newest first, so these win over
  // pybind11's default mapping of std::invalid_argument to ValueError.
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const attnkit::TypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    } catch (const attnkit::ValueError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const attnkit::RuntimeError& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    } catch (const attnkit::MemoryError& e) {
      PyErr_SetString(PyExc_MemoryError, e.what());
    } catch (const std::bad_alloc&) {
      // Arrays say what they asked for (MemoryError above); this is a
      // kernel's temporary memory.
      PyErr_SetString(PyExc_MemoryError, "out of memory for a temporary buffer of a native kernel");
    }
  });

  attnkit::python::bind_array(m);
  attnkit::python::bind_runtime(m);
  attnkit::python::bind_activation(m);
  attnkit::python::bind_gemm(m);
  attnkit::python::bind_attention(m);
  attnkit::python::bind_random(m);
  attnkit::python::bind_embedding(m);
  attnkit::python::bind_position(m);
  attnkit::python::bind_optim(m);
  attnkit::python::bind_probe(m);
  attnkit::python::bind_softmax(m);
  attnkit::python::bind_norm(m);
  attnkit::python::bind_loss(m);
  attnkit::python::bind_elementwise(m);
  attnkit::python::bind_shape(m);
  attnkit::python::bind_sampling(m);
  attnkit::python::bind_moe(m);
  attnkit::python::bind_patch(m);
  attnkit::python::bind_quantized(m);
}
