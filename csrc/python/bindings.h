// pybind11 bindings only: convert arguments, release the GIL, call ops/.
// One bind_* function per file, all called from module.cpp.
#pragma once

#include <pybind11/pybind11.h>

#include <optional>

#include "core/array.h"

namespace attnkit::python {

// An optional array argument or result: Python's None on the binding side,
// an undefined Array on the ops/ side.
using OptionalArray = std::optional<Array>;

inline Array or_undefined(const OptionalArray& a) {
  return a ? *a : Array();
}
inline OptionalArray or_none(const Array& a) {
  return a.defined() ? OptionalArray(a) : std::nullopt;
}

void bind_array(pybind11::module_& m);        // array.cpp: Array, numpy, DLPack
void bind_runtime(pybind11::module_& m);      // runtime.cpp: threads, ISA, memory, build info
void bind_activation(pybind11::module_& m);   // activation.cpp
void bind_gemm(pybind11::module_& m);         // gemm.cpp: matmul, linear, bias gradient
void bind_attention(pybind11::module_& m);    // attention.cpp
void bind_random(pybind11::module_& m);       // random.cpp: Philox streams, dropout
void bind_embedding(pybind11::module_& m);    // embedding.cpp
void bind_position(pybind11::module_& m);     // position.cpp: sinusoidal table, RoPE
void bind_optim(pybind11::module_& m);        // optim.cpp: AdamW step, gradient norm
void bind_probe(pybind11::module_& m);        // probe.cpp: memory bandwidth, FMA peak
void bind_softmax(pybind11::module_& m);      // softmax.cpp
void bind_norm(pybind11::module_& m);         // norm.cpp
void bind_loss(pybind11::module_& m);         // loss.cpp
void bind_elementwise(pybind11::module_& m);  // elementwise.cpp: arithmetic, sums, where, casts
void bind_shape(pybind11::module_& m);        // shape.cpp: permute, split/cat, gather
void bind_sampling(pybind11::module_& m);     // sampling.cpp: the next token from logits
void bind_moe(pybind11::module_& m);          // moe.cpp: mixture-of-experts routing and experts
void bind_patch(pybind11::module_& m);        // patch.cpp: image patches (the Vision Transformer)
void bind_quantized(pybind11::module_& m);    // quantized.cpp: linear layers with int8 weights

}  // namespace attnkit::python
