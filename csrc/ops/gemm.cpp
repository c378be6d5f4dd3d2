#include "ops/gemm.h"

#include <algorithm>
#include <vector>

#include "core/errors.h"
#include "cpu/convert.h"
#include "ops/checks.h"

namespace attnkit::ops {

cpu::GemmActivation parse_gemm_activation(const std::string& activation) {
  if (activation == "none") return cpu::GemmActivation::none;
  if (activation == "relu") return cpu::GemmActivation::relu;
  if (activation == "gelu") return cpu::GemmActivation::gelu;
  if (activation == "gelu_tanh") return cpu::GemmActivation::gelu_tanh;
  throw_value_error("matmul", "activation", "'none', 'relu', 'gelu' or 'gelu_tanh'", "'" + activation + "'");
}

namespace {

// Element offsets of every matrix of an operand over the broadcast batch
// shape: a batch dimension of size 1 (or a missing one) repeats the matrix.
std::vector<std::int64_t> batch_offsets(const Shape& batch_shape, const Shape& operand_shape,
                                        std::int64_t matrix_size) {
  const int nb = static_cast<int>(batch_shape.size());
  const int operand_batch_dims = static_cast<int>(operand_shape.size()) - 2;
  // stride of each broadcast batch dimension in this operand (0 = repeated)
  std::vector<std::int64_t> strides(nb, 0);
  std::int64_t stride = matrix_size;
  for (int d = operand_batch_dims - 1; d >= 0; --d) {
    const int bd = nb - operand_batch_dims + d;
    strides[bd] = operand_shape[d] == 1 ? 0 : stride;
    stride *= operand_shape[d];
  }
  const std::int64_t batch = shape_numel(batch_shape);
  std::vector<std::int64_t> offsets(static_cast<std::size_t>(batch));
  std::vector<std::int64_t> index(nb, 0);
  for (std::int64_t i = 0; i < batch; ++i) {
    std::int64_t offset = 0;
    for (int d = 0; d < nb; ++d) offset += index[d] * strides[d];
    offsets[i] = offset;
    for (int d = nb - 1; d >= 0; --d) {  // next index, last dimension fastest
      if (++index[d] < batch_shape[d]) break;
      index[d] = 0;
    }
  }
  return offsets;
}

}  // namespace

MatmulResult matmul(const Array& a, const Array& b, const Array& out, const Array& bias, const MatmulOptions& options) {
  const char* op = "matmul";
  const bool bf16 = a.dtype() == DType::bfloat16;
  if (!bf16) check_dtype(op, "a", a, DType::float32);
  check_dtype(op, "b", b, a.dtype());
  const DType out_dtype = bf16 ? options.out_dtype : DType::float32;
  if (out_dtype != DType::float32 && out_dtype != DType::bfloat16)
    throw_type_error(op, "out_dtype", "float32 or bfloat16", dtype_name(out_dtype));
  check_cpu(op, "a", a);
  check_cpu(op, "b", b);
  if (a.ndim() < 2) throw_value_error(op, "a", "at least 2 dimensions", a.describe());
  if (b.ndim() < 2) throw_value_error(op, "b", "at least 2 dimensions", b.describe());
  const std::int64_t m = options.transpose_a ? a.dim(-1) : a.dim(-2);
  const std::int64_t k = options.transpose_a ? a.dim(-2) : a.dim(-1);
  const std::int64_t kb = options.transpose_b ? b.dim(-1) : b.dim(-2);
  const std::int64_t n = options.transpose_b ? b.dim(-2) : b.dim(-1);
  if (k != kb)
    throw_value_error(op, "b",
                      "an inner dimension of " + std::to_string(k) + " to match a " + shape_string(a.shape()) +
                          (options.transpose_a ? " (transposed)" : ""),
                      shape_string(b.shape()) + (options.transpose_b ? " (transposed)" : ""));

  // Broadcast the batch dimensions (numpy rules: align from the right; sizes
  // must match or be 1).
  const Shape a_batch(a.shape().begin(), a.shape().end() - 2);
  const Shape b_batch(b.shape().begin(), b.shape().end() - 2);
  const std::size_t nb = std::max(a_batch.size(), b_batch.size());
  Shape batch_shape(nb, 1);
  for (std::size_t i = 0; i < nb; ++i) {
    const std::int64_t da = i < nb - a_batch.size() ? 1 : a_batch[i - (nb - a_batch.size())];
    const std::int64_t db = i < nb - b_batch.size() ? 1 : b_batch[i - (nb - b_batch.size())];
    if (da != db && da != 1 && db != 1)
      throw_value_error(op, "b", "batch dimensions that broadcast with a's " + shape_string(a_batch),
                        shape_string(b_batch));
    batch_shape[i] = da == 1 ? db : da;
  }
  Shape out_shape = batch_shape;
  out_shape.push_back(m);
  out_shape.push_back(n);

  // bfloat16 a and b take a float32 bias (autocast's float32 masters) or a
  // bfloat16 one (a model in bfloat16), widened: the epilogue is float32.
  check_bias(op, bias, n, /*allow_bfloat16=*/bf16);
  Array result = out;
  if (out.defined()) {
    check_dtype(op, "out", out, out_dtype);
    check_cpu(op, "out", out);
    if (out.shape() != out_shape)
      throw_value_error(op, "out", "shape " + shape_string(out_shape), shape_string(out.shape()));
    if (overlaps(out, a) || overlaps(out, b) || (bias.defined() && overlaps(out, bias)))
      throw_value_error(op, "out", "memory separate from the inputs", "an array overlapping them");
  } else {
    if (options.beta != 0.0f)
      throw_value_error(op, "beta", "0 when no 'out' array is given", std::to_string(options.beta));
    result = Array::empty(out_shape, out_dtype);
  }
  if (out_dtype == DType::bfloat16 && options.beta != 0.0f)
    throw_value_error(op, "beta", "0 for a bfloat16 result", std::to_string(options.beta));
  MatmulResult r{result, Array()};
  if (options.save_pre_activation && options.activation != cpu::GemmActivation::none)
    r.pre_activation = Array::empty(out_shape, DType::float32);

  cpu::GemmEpilogue epilogue;
  const Array bias32 = widened(bias);
  epilogue.bias = bias32.defined() ? bias32.data<float>() : nullptr;
  epilogue.activation = options.activation;
  epilogue.pre_activation = r.pre_activation.defined() ? r.pre_activation.data<float>() : nullptr;

  const std::int64_t lda = a.dim(-1);
  const std::int64_t ldb = b.dim(-1);
  const std::int64_t batch = shape_numel(batch_shape);
  if (batch == 0 || m == 0 || n == 0) return r;

  // A bfloat16 result is the float32 one, rounded once.
  Array product = out_dtype == DType::float32 ? result : Array::empty(out_shape, DType::float32);
  float* c = product.data<float>();
  // A batch of row-major A's against one shared B is a single tall product:
  // stack the batch into the rows (better blocking than many small products).
  if (!options.transpose_a && b.ndim() == 2 && a.ndim() > 2) {
    if (bf16)
      cpu::gemm_bf16(c, n, a.data<std::uint16_t>(), lda, false, b.data<std::uint16_t>(), ldb, options.transpose_b,
                     batch * m, n, k, options.alpha, options.beta, epilogue);
    else
      cpu::gemm(c, n, a.data<float>(), lda, false, b.data<float>(), ldb, options.transpose_b, batch * m, n, k,
                options.alpha, options.beta, epilogue);
  } else {
    const std::vector<std::int64_t> offsets_a = batch_offsets(batch_shape, a.shape(), m * k);
    const std::vector<std::int64_t> offsets_b = batch_offsets(batch_shape, b.shape(), k * n);
    if (bf16)
      cpu::gemm_bf16_batched(batch, c, n, m * n, a.data<std::uint16_t>(), lda, offsets_a.data(), options.transpose_a,
                             b.data<std::uint16_t>(), ldb, offsets_b.data(), options.transpose_b, m, n, k,
                             options.alpha, options.beta, epilogue);
    else
      cpu::gemm_batched(batch, c, n, m * n, a.data<float>(), lda, offsets_a.data(), options.transpose_a,
                        b.data<float>(), ldb, offsets_b.data(), options.transpose_b, m, n, k, options.alpha,
                        options.beta, epilogue);
  }
  if (out_dtype == DType::bfloat16) cpu::float_to_bfloat16(result.data<std::uint16_t>(), c, result.numel());
  return r;
}

Array bias_gradient(const Array& grad_output) {
  check_dtype("bias_gradient", "grad_output", grad_output, DType::float32);
  check_cpu("bias_gradient", "grad_output", grad_output);
  if (grad_output.ndim() < 1)
    throw_value_error("bias_gradient", "grad_output", "at least 1 dimension", grad_output.describe());
  const std::int64_t n = grad_output.dim(-1);
  const std::int64_t rows = n == 0 ? 0 : grad_output.numel() / n;
  Array out = Array::empty({n}, DType::float32);
  cpu::column_sum(out.data<float>(), grad_output.data<float>(), rows, n);
  return out;
}

}  // namespace attnkit::ops
