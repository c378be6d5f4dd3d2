#include "ops/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/errors.h"
#include "cpu/attention.h"
#include "ops/checks.h"
#include "ops/random.h"

namespace attnkit::ops {
namespace {

// Key positions are compared as floats inside the kernels: exact below 2^24.
constexpr std::int64_t kMaximumLength = std::int64_t(1) << 24;

// Checks the options against the sizes already in p and fills the rest of
// the kernel's problem description. The lengths are widened to int64 into
// `lengths` when given as int32.
// The sparse pattern's options into p: the global tokens sorted into
// `globals`.
void describe_pattern(const char* op, const AttentionOptions& o, std::vector<std::int64_t>& globals,
                      cpu::AttentionProblem& p) {
  if (o.dilation < 1) throw_value_error(op, "dilation", "a positive int", std::to_string(o.dilation));
  p.dilation = o.dilation;
  const bool positional = o.global_tokens.defined() || o.block_mask.defined();
  if (positional && p.query_length > p.key_length)
    throw_value_error(op, "q", "no more queries than keys with global_tokens or block_mask (positions index keys)",
                      std::to_string(p.query_length) + " queries and " + std::to_string(p.key_length) + " keys");
  if (o.global_tokens.defined()) {
    const Array& g = o.global_tokens;
    check_cpu(op, "global_tokens", g);
    if (g.dtype() != DType::int64 && g.dtype() != DType::int32)
      throw_type_error(op, "global_tokens", "int64 or int32", dtype_name(g.dtype()));
    if (g.ndim() != 1) throw_value_error(op, "global_tokens", "1 dimension", shape_string(g.shape()));
    globals.resize(static_cast<std::size_t>(g.dim(0)));
    for (std::int64_t i = 0; i < g.dim(0); ++i) {
      const std::int64_t t = g.dtype() == DType::int64 ? g.data<std::int64_t>()[i] : g.data<std::int32_t>()[i];
      if (t < 0 || t >= p.key_length)
        throw_value_error(op, "global_tokens", "positions in [0, " + std::to_string(p.key_length) + ")",
                          std::to_string(t) + " at index " + std::to_string(i));
      globals[i] = t;
    }
    std::sort(globals.begin(), globals.end());
    const auto repeated = std::adjacent_find(globals.begin(), globals.end());
    if (repeated != globals.end())
      throw_value_error(op, "global_tokens", "distinct positions", std::to_string(*repeated) + " twice");
    p.global_tokens = globals.data();
    p.global_count = static_cast<std::int64_t>(globals.size());
  }
  if (o.block_mask.defined()) {
    const Array& m = o.block_mask;
    check_dtype(op, "block_mask", m, DType::bool_);
    check_cpu(op, "block_mask", m);
    if (o.block_size < 1)
      throw_value_error(op, "block_size", "a positive int with block_mask", std::to_string(o.block_size));
    const std::int64_t blocks = (p.key_length + o.block_size - 1) / o.block_size;
    if (m.ndim() != 2 || m.dim(0) < blocks || m.dim(1) < blocks)
      throw_value_error(op, "block_mask",
                        "2 dimensions of at least ceil(Tk / block_size) = " + std::to_string(blocks) + " blocks",
                        shape_string(m.shape()));
    p.block_mask = m.data<std::uint8_t>();
    p.block_size = o.block_size;
    p.block_columns = m.dim(1);
  } else if (o.block_size != 0) {
    throw_value_error(op, "block_size", "0 without block_mask", std::to_string(o.block_size));
  }
}

void describe_options(const char* op, const AttentionOptions& o, std::vector<std::int64_t>& lengths,
                      std::vector<std::int64_t>& globals, cpu::AttentionProblem& p) {
  describe_pattern(op, o, globals, p);
  const std::int64_t batch = p.batch, head_dim = p.head_dim;
  if (o.window < 0) throw_value_error(op, "window", "a positive width", std::to_string(o.window));
  if (!(o.scale >= 0.0) || !std::isfinite(static_cast<float>(o.scale)))
    throw_value_error(op, "scale", "a positive number that is finite in float32", std::to_string(o.scale));

  p.scale = static_cast<float>(o.scale > 0.0 ? o.scale : 1.0 / std::sqrt(static_cast<double>(head_dim)));
  p.causal = o.causal;
  // A window wider than both sequences hides nothing; clamping it keeps the
  // kernels' position arithmetic far from overflow.
  p.window = std::min(o.window, p.query_length + p.key_length);
  p.for_backward = o.for_backward;
  if (o.dropout_p != 0.0) {
    const DropoutThreshold t = dropout_threshold(op, "dropout_p", o.dropout_p);
    p.dropout_drop_below = t.drop_below;
    p.dropout_scale = t.scale;
    p.dropout_seed = o.dropout_seed;
    p.dropout_offset = o.dropout_offset;
  }

  if (o.key_lengths.defined()) {
    const Array& l = o.key_lengths;
    check_cpu(op, "key_lengths", l);
    if (l.dtype() != DType::int64 && l.dtype() != DType::int32)
      throw_type_error(op, "key_lengths", "int64 or int32", dtype_name(l.dtype()));
    if (l.shape() != Shape{batch})
      throw_value_error(op, "key_lengths", "shape [" + std::to_string(batch) + "]", shape_string(l.shape()));
    lengths.resize(static_cast<std::size_t>(batch));
    for (std::int64_t b = 0; b < batch; ++b) {
      const std::int64_t n = l.dtype() == DType::int64 ? l.data<std::int64_t>()[b] : l.data<std::int32_t>()[b];
      if (n < 0 || n > p.key_length)
        throw_value_error(op, "key_lengths", "lengths in [0, " + std::to_string(p.key_length) + "]",
                          std::to_string(n) + " at batch " + std::to_string(b));
      lengths[b] = n;
    }
    p.key_lengths = lengths.data();
  }
  if (o.key_padding_mask.defined()) {
    const Array& m = o.key_padding_mask;
    check_dtype(op, "key_padding_mask", m, DType::bool_);
    check_cpu(op, "key_padding_mask", m);
    if (m.shape() != Shape{batch, p.key_length})
      throw_value_error(op, "key_padding_mask",
                        "shape [" + std::to_string(batch) + ", " + std::to_string(p.key_length) + "]",
                        shape_string(m.shape()));
    p.key_padding = m.data<std::uint8_t>();
  }
}

// Validates separate q, k, v and the options into the kernel's problem.
cpu::AttentionProblem describe(const char* op, const Array& q, const Array& k, const Array& v,
                               const AttentionOptions& o, std::vector<std::int64_t>& lengths,
                               std::vector<std::int64_t>& globals, bool forward = false) {
  // A forward takes float32 or bfloat16 q, k and v (ops/checks.h).
  const DType dtype = forward ? check_compute_dtype(op, "q", q) : DType::float32;
  for (auto [name, a] : {std::pair<const char*, const Array*>{"q", &q}, {"k", &k}, {"v", &v}}) {
    if (forward) {
      check_same_dtype(op, name, *a, "q", dtype);
    } else {
      check_dtype(op, name, *a, DType::float32);
      check_cpu(op, name, *a);
    }
    if (a->ndim() != 4)
      throw_value_error(op, name, "4 dimensions [batch, seq, heads, head_dim]", shape_string(a->shape()));
  }
  const std::int64_t batch = q.dim(0), heads = q.dim(2), head_dim = q.dim(3);
  if (k.dim(0) != batch || k.dim(3) != head_dim)
    throw_value_error(op, "k",
                      "shape [" + std::to_string(batch) + ", Tk, Hkv, " + std::to_string(head_dim) + "] to match q " +
                          shape_string(q.shape()),
                      shape_string(k.shape()));
  if (v.shape() != k.shape())
    throw_value_error(op, "v", "the shape of k, " + shape_string(k.shape()), shape_string(v.shape()));
  const std::int64_t kv_heads = k.dim(2);
  if (heads < 1) throw_value_error(op, "q", "at least one head", shape_string(q.shape()));
  if (head_dim < 1) throw_value_error(op, "q", "a head_dim of at least 1", shape_string(q.shape()));
  if (kv_heads < 1 || heads % kv_heads != 0)
    throw_value_error(op, "k", "a number of heads dividing q's " + std::to_string(heads), std::to_string(kv_heads));
  if (q.dim(1) >= kMaximumLength || k.dim(1) >= kMaximumLength)
    throw_value_error(op, "q", "sequences shorter than 2^24",
                      shape_string(q.shape()) + " and k " + shape_string(k.shape()));
  cpu::AttentionProblem p{};
  p.batch = batch;
  p.query_length = q.dim(1);
  p.key_length = k.dim(1);
  p.heads = heads;
  p.kv_heads = kv_heads;
  p.head_dim = head_dim;
  p.q_stride = heads * head_dim;
  p.k_stride = p.v_stride = kv_heads * head_dim;
  describe_options(op, o, lengths, globals, p);
  return p;
}

// Validates a fused projection qkv [B, T, (H + 2 Hkv) D] (each row: the
// queries of the H heads, then the keys, then the values of the Hkv heads)
// and the options into the kernel's problem, with q, k, v reading the rows of
// qkv in place.
cpu::AttentionProblem describe_packed(const char* op, const Array& qkv, std::int64_t heads, std::int64_t kv_heads,
                                      const AttentionOptions& o, std::vector<std::int64_t>& lengths,
                                      std::vector<std::int64_t>& globals, bool forward = false) {
  if (forward) {
    check_compute_dtype(op, "qkv", qkv);
  } else {
    check_dtype(op, "qkv", qkv, DType::float32);
    check_cpu(op, "qkv", qkv);
  }
  if (qkv.ndim() != 3)
    throw_value_error(op, "qkv", "3 dimensions [batch, seq, (num_heads + 2 num_kv_heads) head_dim]",
                      shape_string(qkv.shape()));
  if (heads < 1) throw_value_error(op, "num_heads", "at least 1", std::to_string(heads));
  if (kv_heads < 1 || heads % kv_heads != 0)
    throw_value_error(op, "num_kv_heads", "a divisor of num_heads (" + std::to_string(heads) + ")",
                      std::to_string(kv_heads));
  const std::int64_t width = qkv.dim(2);
  const std::int64_t head_count = heads + 2 * kv_heads;
  if (width < 1 || width % head_count != 0)
    throw_value_error(op, "qkv",
                      "a last dimension that is a positive multiple of num_heads + 2 "
                      "num_kv_heads = " +
                          std::to_string(head_count),
                      shape_string(qkv.shape()));
  if (qkv.dim(1) >= kMaximumLength)
    throw_value_error(op, "qkv", "a sequence shorter than 2^24", shape_string(qkv.shape()));
  cpu::AttentionProblem p{};
  p.batch = qkv.dim(0);
  p.query_length = p.key_length = qkv.dim(1);
  p.heads = heads;
  p.kv_heads = kv_heads;
  p.head_dim = width / head_count;
  p.q_stride = p.k_stride = p.v_stride = width;
  describe_options(op, o, lengths, globals, p);
  return p;
}

// Validates what a backward call gets from its forward: grad_output and out
// [B, Tq, H, D], and lse [B, H, Tq].
void check_forward_results(const char* op, const cpu::AttentionProblem& p, const Array& grad_out, const Array& out,
                           const Array& lse) {
  const Shape out_shape{p.batch, p.query_length, p.heads, p.head_dim};
  for (auto [name, a] : {std::pair<const char*, const Array*>{"grad_output", &grad_out}, {"out", &out}}) {
    check_dtype(op, name, *a, DType::float32);
    check_cpu(op, name, *a);
    if (a->shape() != out_shape)
      throw_value_error(op, name, "shape " + shape_string(out_shape), shape_string(a->shape()));
  }
  check_dtype(op, "lse", lse, DType::float32);
  check_cpu(op, "lse", lse);
  if (lse.shape() != Shape{p.batch, p.heads, p.query_length})
    throw_value_error(op, "lse", "shape " + shape_string({p.batch, p.heads, p.query_length}),
                      shape_string(lse.shape()));
}

}  // namespace

AttentionForward attention_forward(const Array& q, const Array& k, const Array& v, const AttentionOptions& options) {
  std::vector<std::int64_t> lengths, globals;
  const cpu::AttentionProblem p = describe("attention", q, k, v, options, lengths, globals, true);
  AttentionForward r{Array::zeros(q.shape(), DType::float32),
                     Array::empty({p.batch, p.heads, p.query_length}, DType::float32)};
  if (r.out.numel() == 0) return {rounded_to(r.out, q.dtype()), r.lse};
  // bfloat16 q, k, v: widened here, so the scores, the softmax and the
  // accumulators are the float32 kernel's; the output is rounded once.
  const Array q32 = widened(q), k32 = widened(k), v32 = widened(v);
  cpu::attention_forward(r.out.data<float>(), r.lse.data<float>(), q32.data<float>(), k32.data<float>(),
                         v32.data<float>(), p);
  r.out = rounded_to(r.out, q.dtype());
  return r;
}

AttentionGradients attention_backward(const Array& grad_out, const Array& q, const Array& k, const Array& v,
                                      const Array& out, const Array& lse, const AttentionOptions& options) {
  const char* op = "attention_backward";
  std::vector<std::int64_t> lengths, globals;
  const cpu::AttentionProblem p = describe(op, q, k, v, options, lengths, globals);
  check_forward_results(op, p, grad_out, out, lse);
  // dq is accumulated into tile by tile; dk and dv are written whole.
  AttentionGradients g{Array::zeros(q.shape(), DType::float32), Array::zeros(k.shape(), DType::float32),
                       Array::zeros(v.shape(), DType::float32)};
  if (g.dq.numel() == 0 || g.dk.numel() == 0) return g;
  cpu::attention_backward(g.dq.data<float>(), g.dk.data<float>(), g.dv.data<float>(), grad_out.data<float>(),
                          q.data<float>(), k.data<float>(), v.data<float>(), out.data<float>(), lse.data<float>(), p);
  return g;
}

AttentionForward attention_qkv_forward(const Array& qkv, std::int64_t heads, std::int64_t kv_heads,
                                       const AttentionOptions& options) {
  std::vector<std::int64_t> lengths, globals;
  const cpu::AttentionProblem p =
      describe_packed("attention_qkv", qkv, heads, kv_heads, options, lengths, globals, true);
  AttentionForward r{Array::zeros({p.batch, p.query_length, p.heads, p.head_dim}, DType::float32),
                     Array::empty({p.batch, p.heads, p.query_length}, DType::float32)};
  if (r.out.numel() == 0) return {rounded_to(r.out, qkv.dtype()), r.lse};
  const Array qkv32 = widened(qkv);
  const float* q = qkv32.data<float>();
  cpu::attention_forward(r.out.data<float>(), r.lse.data<float>(), q, q + p.heads * p.head_dim,
                         q + (p.heads + p.kv_heads) * p.head_dim, p);
  r.out = rounded_to(r.out, qkv.dtype());
  return r;
}

Array attention_qkv_backward(const Array& grad_out, const Array& qkv, const Array& out, const Array& lse,
                             std::int64_t heads, std::int64_t kv_heads, const AttentionOptions& options) {
  const char* op = "attention_qkv_backward";
  std::vector<std::int64_t> lengths, globals;
  const cpu::AttentionProblem p = describe_packed(op, qkv, heads, kv_heads, options, lengths, globals);
  check_forward_results(op, p, grad_out, out, lse);
  // dq is accumulated into tile by tile (so the whole buffer starts at 0);
  // dk and dv are written whole.
  Array grad_qkv = Array::zeros(qkv.shape(), DType::float32);
  if (grad_qkv.numel() == 0) return grad_qkv;
  const float* q = qkv.data<float>();
  float* dq = grad_qkv.data<float>();
  const std::int64_t k_column = p.heads * p.head_dim, v_column = (p.heads + p.kv_heads) * p.head_dim;
  cpu::attention_backward(dq, dq + k_column, dq + v_column, grad_out.data<float>(), q, q + k_column, q + v_column,
                          out.data<float>(), lse.data<float>(), p);
  return grad_qkv;
}

}  // namespace attnkit::ops
