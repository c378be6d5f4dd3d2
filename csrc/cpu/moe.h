// CPU mixture-of-experts kernels: top-k routing, the counting sort of slots by
// expert, and the experts' feed-forward networks over the grouped tokens (one
// GEMM per expert and layer, through cpu/gemm.h). Shapes as in ops/moe.h.
#pragma once

#include <cstdint>

namespace attnkit::cpu {

// experts [N, k], gates [N, k] <- probs [N, E]: each row's k largest, best
// first, ties to the lower index; gates renormalized to sum to 1 when asked.
void moe_route(std::int32_t* experts, float* gates, const float* probs, std::int64_t N, std::int64_t E, std::int64_t k,
               bool renormalize);

// dprobs [N, E] <- dgates [N, k]. With renormalization, g_j = p_j / s (s the
// sum of the row's k chosen p), so dp_j = (dg_j - sum_i dg_i g_i) / s.
void moe_route_backward(float* dprobs, const float* dgates, const float* probs, const std::int32_t* experts,
                        const float* gates, std::int64_t N, std::int64_t E, std::int64_t k, bool renormalize);

// rows [N, k], offsets [E + 1], load [E] <- experts [N, k] (ids checked in
// [0, E)); capacity < 0 is no limit. Serial: O(N k + E).
void moe_plan(std::int64_t* rows, std::int64_t* offsets, std::int64_t* load, const std::int32_t* experts,
              std::int64_t N, std::int64_t E, std::int64_t k, std::int64_t capacity);

enum class MoeActivation { relu, gelu, gelu_tanh, swiglu };

// The experts' parameters: fc1 [E, H1, C], fc2 [E, C, F] (H1 = F, or 2F for
// swiglu); the biases [E, H1] and [E, C] may be null.
struct MoeExperts {
  const float* fc1_weight;
  const float* fc1_bias;
  const float* fc2_weight;
  const float* fc2_bias;
  std::int64_t n_experts, d_model, d_ff;
  MoeActivation activation;
};

// The grouped buffers, S rows each (S = offsets[E]).
struct MoeGroupedBuffers {
  float* grouped_x;       // [S, C]
  float* hidden_pre;      // [S, H1]
  float* hidden;          // [S, F]
  float* expert_outputs;  // [S, C]
};

// y [N, C] = sum over kept slots of gates * expert output; fills `saved`.
void moe_ffn_forward(float* y, const MoeGroupedBuffers& saved, const float* x, const float* gates,
                     const std::int64_t* rows, const std::int64_t* offsets, const MoeExperts& experts, std::int64_t N,
                     std::int64_t k);

// The gradients (a bias's pointer null when it has none): dfc1_weight
// [E, H1, C], dfc1_bias [E, H1], dfc2_weight [E, C, F], dfc2_bias [E, C].
struct MoeExpertGradients {
  float* dfc1_weight;
  float* dfc1_bias;
  float* dfc2_weight;
  float* dfc2_bias;
};

// dx [N, C], dgates [N, k] and the experts' gradients <- dy [N, C].
void moe_ffn_backward(float* dx, float* dgates, const MoeExpertGradients& grads, const float* dy, const float* gates,
                      const std::int64_t* rows, const std::int64_t* offsets, const MoeExperts& experts,
                      const MoeGroupedBuffers& saved, std::int64_t N, std::int64_t k);

}  // namespace attnkit::cpu
