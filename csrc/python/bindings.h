// pybind11 bindings only: convert arguments, release the GIL, call ops/.
// One bind_* function per file, all called from module.cpp.
#pragma once

#include <pybind11/pybind11.h>

namespace attnkit::python {

void bind_array(pybind11::module_& m);   // array.cpp: Array, numpy, DLPack
void bind_runtime(pybind11::module_& m); // runtime.cpp: threads, ISA, memory, build info
void bind_activation(pybind11::module_& m);  // activation.cpp
void bind_softmax(pybind11::module_& m);  // softmax.cpp
void bind_norm(pybind11::module_& m);  // norm.cpp
void bind_loss(pybind11::module_& m);  // loss.cpp

}  // namespace attnkit::python
