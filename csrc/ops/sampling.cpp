#include "ops/sampling.h"

#include <cmath>
#include <limits>
#include <string>

#include "core/errors.h"
#include "cpu/sampling.h"
#include "ops/checks.h"

namespace attnkit::ops {

Array sample_tokens(const Array& logits, const Array& seen, const SamplingOptions& o, std::uint64_t seed,
                    std::uint64_t offset) {
  const char* op = "sample_tokens";
  check_compute_dtype(op, "logits", logits);  // bfloat16 widened below (exact)
  if (logits.ndim() != 2) throw_value_error(op, "logits", "2 dimensions [batch, vocab]", shape_string(logits.shape()));
  const std::int64_t batch = logits.dim(0), vocab = logits.dim(1);
  if (vocab < 1 || vocab > std::numeric_limits<std::int32_t>::max())
    throw_value_error(op, "logits", "a vocabulary of 1 to 2^31 - 1 tokens", shape_string(logits.shape()));
  if (seen.defined()) {
    check_dtype(op, "seen", seen, DType::bool_);
    check_cpu(op, "seen", seen);
    check_same_shape(op, "seen", seen, "logits", logits);
  }
  if (!(o.temperature >= 0.0) || !std::isfinite(o.temperature))
    throw_value_error(op, "temperature", "a finite number >= 0", number_text(o.temperature));
  if (o.top_k < 0) throw_value_error(op, "top_k", "a count >= 1 (0: no top-k)", std::to_string(o.top_k));
  if (!(o.top_p > 0.0 && o.top_p <= 1.0))
    throw_value_error(op, "top_p", "a probability in (0, 1]", number_text(o.top_p));
  if (!(o.repetition_penalty > 0.0) || !std::isfinite(o.repetition_penalty))
    throw_value_error(op, "repetition_penalty", "a finite number > 0", number_text(o.repetition_penalty));

  // The kernel trusts every row to define a distribution: no NaN, no +inf
  // (exp(inf - inf) is NaN), and some token that can occur.
  const Array logits32 = widened(logits);
  const float* values = logits32.data<float>();
  for (std::int64_t b = 0; b < batch; ++b) {
    bool any_finite = false;
    for (std::int64_t j = 0; j < vocab; ++j) {
      const float x = values[b * vocab + j];
      if (std::isnan(x) || x == std::numeric_limits<float>::infinity())
        throw_value_error(op, "logits", "finite values or -inf",
                          number_text(x, 9) + " at row " + std::to_string(b) + ", token " + std::to_string(j));
      any_finite = any_finite || std::isfinite(x);
    }
    if (!any_finite)
      throw_value_error(op, "logits", "at least one logit above -inf in every row",
                        "only -inf in row " + std::to_string(b));
  }

  Array tokens = Array::empty({batch}, DType::int64);
  if (batch == 0) return tokens;
  const cpu::SamplingSettings settings{o.temperature, o.top_k, o.top_p, o.repetition_penalty};
  cpu::sample_tokens(tokens.data<std::int64_t>(), values, seen.defined() ? seen.data<std::uint8_t>() : nullptr, batch,
                     vocab, settings, seed, offset);
  return tokens;
}

}  // namespace attnkit::ops
