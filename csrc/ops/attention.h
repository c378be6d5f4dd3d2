// Scaled dot-product attention: the checked entry points.
#pragma once

#include "core/array.h"

namespace attnkit::ops {

struct AttentionOptions {
  bool causal = false;
  std::int64_t window = 0;  // 0: no window
  double scale = 0.0;       // 0: 1 / sqrt(head_dim)
  Array key_lengths;        // int64 or int32 [B], or undefined
  Array key_padding_mask;   // bool [B, Tk] (true = ignore the key), or undefined
  bool for_backward = true; // false: inference only, the decode path may be used
  double dropout_p = 0.0;   // attention dropout, from the Philox stream (seed, offset)
  std::uint64_t dropout_seed = 0, dropout_offset = 0;
};

struct AttentionForward {
  Array out;  // [B, Tq, H, D]
  Array lse;  // [B, H, Tq] log-sum-exp of each query row's scores (-inf: all masked)
};

struct AttentionGradients {
  Array dq, dk, dv;
};

// q [B, Tq, H, D]; k and v [B, Tk, Hkv, D] with Hkv dividing H; float32.
AttentionForward attention_forward(const Array& q, const Array& k, const Array& v,
                                   const AttentionOptions& options);
AttentionGradients attention_backward(const Array& grad_out, const Array& q, const Array& k,
                                      const Array& v, const Array& out, const Array& lse,
                                      const AttentionOptions& options);

}  // namespace attnkit::ops
