// CPU kernel of the sampling family: the next token of each row of logits,
// drawn from the filtered softmax (repetition penalty, temperature, top-k,
// top-p) or taken greedily. Scalar code: a row costs a few passes over the
// vocabulary, small next to the forward pass that made the logits.
#pragma once

#include <cstdint>

namespace attnkit::cpu {

struct SamplingSettings {
  // 0: greedy (the argmax after the repetition penalty; ties go to the lower id).
  double temperature;
  // Keep only the top_k largest logits; 0 (or >= vocab): keep all.
  std::int64_t top_k;
  // Keep the smallest set of most probable tokens whose probability reaches
  // top_p (after top-k); 1: keep all.
  double top_p;
  // CTRL's penalty (Keskar et al., 2019): a seen token's logit is divided by
  // it when positive and multiplied by it when negative. 1: none.
  double repetition_penalty;
};

// tokens[b] for the row logits[b, 0..vocab) of [batch, vocab] float32. seen
// [batch, vocab] (nonzero: the token occurred) or null. Row b draws with the
// uniform number made from numbers 2b and 2b + 1 of the Philox stream (seed,
// offset) (53 random bits), so the tokens depend only on the inputs and the
// stream, not on the thread count. Rows must hold no NaN or +inf and at least
// one logit above -inf (ops/ checks).
void sample_tokens(std::int64_t* tokens, const float* logits, const std::uint8_t* seen, std::int64_t batch,
                   std::int64_t vocab, const SamplingSettings& settings, std::uint64_t seed, std::uint64_t offset);

}  // namespace attnkit::cpu
