// Scaled dot-product attention: the checked entry points.
#pragma once

#include "core/array.h"

namespace attnkit::ops {

struct AttentionOptions {
  bool causal = false;
  std::int64_t window = 0;   // 0: no window
  double scale = 0.0;        // 0: 1 / sqrt(head_dim)
  Array key_lengths;         // int64 or int32 [B], or undefined
  Array key_padding_mask;    // bool [B, Tk] (true = ignore the key), or undefined
  bool for_backward = true;  // false: inference only, the decode path may be used
  double dropout_p = 0.0;    // attention dropout, from the Philox stream (seed, offset)
  std::uint64_t dropout_seed = 0, dropout_offset = 0;
  // Sparse patterns (cpu/attention.h, AttentionProblem): a dilation of the
  // window, global tokens (int64 or int32 [G], distinct positions in [0, Tk),
  // any order) and a block mask (bool [rows, columns], both at least
  // ceil(Tk / block_size)) over blocks of block_size positions.
  std::int64_t dilation = 1;
  Array global_tokens;
  Array block_mask;
  std::int64_t block_size = 0;
};

struct AttentionForward {
  Array out;  // [B, Tq, H, D]
  Array lse;  // [B, H, Tq] log-sum-exp of each query row's scores (-inf: all masked)
};

struct AttentionGradients {
  Array dq, dk, dv;
};

// q [B, Tq, H, D]; k and v [B, Tk, Hkv, D] with Hkv dividing H; float32.
AttentionForward attention_forward(const Array& q, const Array& k, const Array& v, const AttentionOptions& options);
AttentionGradients attention_backward(const Array& grad_out, const Array& q, const Array& k, const Array& v,
                                      const Array& out, const Array& lse, const AttentionOptions& options);

// Self-attention on one fused projection qkv [B, T, (H + 2 Hkv) D], float32:
// each row holds the queries of the H heads, then the keys and then the
// values of the Hkv heads (H % Hkv == 0). The kernels read q, k and v in
// place; the same result, bit for bit, as attention_forward on the split
// arrays. out is [B, T, H, D].
AttentionForward attention_qkv_forward(const Array& qkv, std::int64_t heads, std::int64_t kv_heads,
                                       const AttentionOptions& options);
// The gradient of the loss with respect to qkv, [B, T, (H + 2 Hkv) D]: dq,
// dk and dv written into one array in qkv's layout.
Array attention_qkv_backward(const Array& grad_out, const Array& qkv, const Array& out, const Array& lse,
                             std::int64_t heads, std::int64_t kv_heads, const AttentionOptions& options);

}  // namespace attnkit::ops
