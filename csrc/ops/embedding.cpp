#include "ops/embedding.h"

#include <string>

#include "core/errors.h"
#include "cpu/embedding.h"
#include "cpu/shape.h"
#include "ops/checks.h"

namespace attnkit::ops {
namespace {

void check_indices_dtype(const char* op, const char* argument, const Array& indices) {
  check_defined(op, argument, indices);
  if (indices.dtype() != DType::int32 && indices.dtype() != DType::int64)
    throw_type_error(op, argument, "int32 or int64 token ids", dtype_name(indices.dtype()));
  check_cpu(op, argument, indices);
}

// Every id must name a row: the kernels read (forward) or write (backward)
// row id without further checks.
template <typename Index>
void check_ids_in_range(const char* op, const char* argument, const Index* ids, std::int64_t n, std::int64_t V) {
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t id = static_cast<std::int64_t>(ids[i]);
    if (id < 0 || id >= V)
      throw_value_error(op, argument, "token ids in [0, " + std::to_string(V) + ")",
                        "id " + std::to_string(id) + " at flat position " + std::to_string(i));
  }
}

void check_ids(const char* op, const char* argument, const Array& indices, std::int64_t V) {
  if (indices.dtype() == DType::int64)
    check_ids_in_range(op, argument, indices.data<std::int64_t>(), indices.numel(), V);
  else check_ids_in_range(op, argument, indices.data<std::int32_t>(), indices.numel(), V);
}

Shape output_shape(const Array& indices, std::int64_t C) {
  Shape shape = indices.shape();
  shape.push_back(C);
  return shape;
}

// "[2, 3, C]" for indices of shape [2, 3].
std::string symbolic_output_shape(const Array& indices) {
  const std::string shape = shape_string(indices.shape());
  return shape.substr(0, shape.size() - 1) + (indices.ndim() > 0 ? ", C]" : "C]");
}

}  // namespace

Array embedding_forward(const Array& indices, const Array& weight) {
  check_indices_dtype("embedding", "input", indices);
  check_compute_dtype("embedding", "weight", weight);
  if (weight.ndim() != 2)
    throw_value_error("embedding", "weight", "a 2-d [num_embeddings, embedding_dim] array",
                      shape_string(weight.shape()));
  const std::int64_t V = weight.dim(0), C = weight.dim(1);
  check_ids("embedding", "input", indices, V);
  Array out = Array::empty(output_shape(indices, C), weight.dtype());
  const std::int64_t N = indices.numel();
  if (weight.dtype() == DType::bfloat16) {
    // The rows as they are (a copy of their bits: exact); never the whole
    // table widened.
    if (indices.dtype() == DType::int64)
      cpu::index_select(out.raw_data(), weight.raw_data(), indices.data<std::int64_t>(), 1, V, N, C, weight.itemsize());
    else
      cpu::index_select(out.raw_data(), weight.raw_data(), indices.data<std::int32_t>(), 1, V, N, C, weight.itemsize());
    return out;
  }
  if (indices.dtype() == DType::int64)
    cpu::embedding_forward(out.data<float>(), indices.data<std::int64_t>(), weight.data<float>(), N, C);
  else cpu::embedding_forward(out.data<float>(), indices.data<std::int32_t>(), weight.data<float>(), N, C);
  return out;
}

Array embedding_backward(const Array& grad_output, const Array& indices, std::int64_t num_embeddings) {
  check_indices_dtype("embedding_backward", "input", indices);
  check_dtype("embedding_backward", "grad_output", grad_output, DType::float32);
  check_cpu("embedding_backward", "grad_output", grad_output);
  if (num_embeddings < 0)
    throw_value_error("embedding_backward", "num_embeddings", "a count >= 0", std::to_string(num_embeddings));
  const std::int64_t C = grad_output.ndim() > 0 ? grad_output.dim(-1) : 0;
  if (grad_output.ndim() != indices.ndim() + 1 || grad_output.shape() != output_shape(indices, C))
    throw_value_error("embedding_backward", "grad_output",
                      "the shape of 'input' plus an embedding dimension, " + symbolic_output_shape(indices),
                      shape_string(grad_output.shape()));
  check_ids("embedding_backward", "input", indices, num_embeddings);
  Array dweight = Array::empty({num_embeddings, C}, DType::float32);
  const std::int64_t N = indices.numel();
  if (indices.dtype() == DType::int64)
    cpu::embedding_backward(dweight.data<float>(), grad_output.data<float>(), indices.data<std::int64_t>(), N,
                            num_embeddings, C);
  else
    cpu::embedding_backward(dweight.data<float>(), grad_output.data<float>(), indices.data<std::int32_t>(), N,
                            num_embeddings, C);
  return dweight;
}

}  // namespace attnkit::ops
