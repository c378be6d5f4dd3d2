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

// Validates the inputs and fills the kernel's problem description. The
// lengths are widened to int64 into `lengths` when given as int32.
cpu::AttentionProblem describe(const char* op, const Array& q, const Array& k, const Array& v,
                               const AttentionOptions& o, std::vector<std::int64_t>& lengths) {
  for (auto [name, a] : {std::pair<const char*, const Array*>{"q", &q}, {"k", &k}, {"v", &v}}) {
    check_dtype(op, name, *a, DType::float32);
    check_cpu(op, name, *a);
    if (a->ndim() != 4)
      throw_value_error(op, name, "4 dimensions [batch, seq, heads, head_dim]", shape_string(a->shape()));
  }
  const std::int64_t batch = q.dim(0), heads = q.dim(2), head_dim = q.dim(3);
  if (k.dim(0) != batch || k.dim(3) != head_dim)
    throw_value_error(op, "k", "shape [" + std::to_string(batch) + ", Tk, Hkv, " +
                      std::to_string(head_dim) + "] to match q " + shape_string(q.shape()),
                      shape_string(k.shape()));
  if (v.shape() != k.shape())
    throw_value_error(op, "v", "the shape of k, " + shape_string(k.shape()), shape_string(v.shape()));
  const std::int64_t kv_heads = k.dim(2);
  if (heads < 1) throw_value_error(op, "q", "at least one head", shape_string(q.shape()));
  if (head_dim < 1) throw_value_error(op, "q", "a head_dim of at least 1", shape_string(q.shape()));
  if (kv_heads < 1 || heads % kv_heads != 0)
    throw_value_error(op, "k", "a number of heads dividing q's " + std::to_string(heads),
                      std::to_string(kv_heads));
  // Key positions are compared as floats inside the kernels: exact below 2^24.
  constexpr std::int64_t kMaximumLength = std::int64_t(1) << 24;
  if (q.dim(1) >= kMaximumLength || k.dim(1) >= kMaximumLength)
    throw_value_error(op, "q", "sequences shorter than 2^24", shape_string(q.shape()) + " and k " +
                      shape_string(k.shape()));
  if (o.window < 0) throw_value_error(op, "window", "a positive width", std::to_string(o.window));
  if (!(o.scale >= 0.0) || !std::isfinite(static_cast<float>(o.scale)))
    throw_value_error(op, "scale", "a positive number that is finite in float32", std::to_string(o.scale));

  cpu::AttentionProblem p{};
  p.batch = batch;
  p.query_length = q.dim(1);
  p.key_length = k.dim(1);
  p.heads = heads;
  p.kv_heads = kv_heads;
  p.head_dim = head_dim;
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
      throw_value_error(op, "key_padding_mask", "shape [" + std::to_string(batch) + ", " +
                        std::to_string(p.key_length) + "]", shape_string(m.shape()));
    p.key_padding = m.data<std::uint8_t>();
  }
  return p;
}

}  // namespace

AttentionForward attention_forward(const Array& q, const Array& k, const Array& v,
                                   const AttentionOptions& options) {
  std::vector<std::int64_t> lengths;
  const cpu::AttentionProblem p = describe("attention", q, k, v, options, lengths);
  AttentionForward r{Array::zeros(q.shape(), DType::float32),
                     Array::empty({p.batch, p.heads, p.query_length}, DType::float32)};
  if (r.out.numel() == 0) return r;
  cpu::attention_forward(r.out.data<float>(), r.lse.data<float>(), q.data<float>(), k.data<float>(),
                         v.data<float>(), p);
  return r;
}

AttentionGradients attention_backward(const Array& grad_out, const Array& q, const Array& k,
                                      const Array& v, const Array& out, const Array& lse,
                                      const AttentionOptions& options) {
  const char* op = "attention_backward";
  std::vector<std::int64_t> lengths;
  const cpu::AttentionProblem p = describe(op, q, k, v, options, lengths);
  for (auto [name, a] : {std::pair<const char*, const Array*>{"grad_output", &grad_out}, {"out", &out}}) {
    check_dtype(op, name, *a, DType::float32);
    check_cpu(op, name, *a);
    check_same_shape(op, name, *a, "q", q);
  }
  check_dtype(op, "lse", lse, DType::float32);
  check_cpu(op, "lse", lse);
  if (lse.shape() != Shape{p.batch, p.heads, p.query_length})
    throw_value_error(op, "lse", "shape " + shape_string({p.batch, p.heads, p.query_length}),
                      shape_string(lse.shape()));
  // dq is accumulated into tile by tile; dk and dv are written whole.
  AttentionGradients g{Array::zeros(q.shape(), DType::float32), Array::zeros(k.shape(), DType::float32),
                       Array::zeros(v.shape(), DType::float32)};
  if (g.dq.numel() == 0 || g.dk.numel() == 0) return g;
  cpu::attention_backward(g.dq.data<float>(), g.dk.data<float>(), g.dv.data<float>(),
                          grad_out.data<float>(), q.data<float>(), k.data<float>(), v.data<float>(),
                          out.data<float>(), lse.data<float>(), p);
  return g;
}

}  // namespace attnkit::ops
