// Sampling the next token: the checked entry point.
#pragma once

#include <cstdint>

#include "core/array.h"

namespace attnkit::ops {

struct SamplingOptions {
  double temperature = 1.0;         // 0: greedy
  std::int64_t top_k = 0;           // 0: no top-k
  double top_p = 1.0;               // in (0, 1]; 1: no nucleus filter
  double repetition_penalty = 1.0;  // > 0; 1: none
};

// int64 [B]: one token per row of logits float32 [B, V], drawn from the
// filtered softmax with the Philox stream (seed, offset), or the argmax when
// temperature is 0. seen: bool [B, V] (true = the token occurred, for the
// repetition penalty) or undefined. ValueError on a NaN or +inf logit, or a
// row whose logits are all -inf.
Array sample_tokens(const Array& logits, const Array& seen, const SamplingOptions& options, std::uint64_t seed,
                    std::uint64_t offset);

}  // namespace attnkit::ops
