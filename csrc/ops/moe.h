// Mixture-of-experts ops: routing (top-k of the router's probabilities), the
// grouping of tokens by expert, and the experts' feed-forward networks run as
// one GEMM per expert over its tokens. The checked, public C++ entry points.
//
// Every token n of x [N, C] has top_k slots (n, j): slot j sends the token to
// expert experts[n, j] with weight gates[n, j]. The grouping gives each kept
// slot a row of the grouped buffers ([S, ...], S = kept slots), the rows of
// expert e being offsets[e] .. offsets[e + 1]; rows[n, j] = -1 marks a slot
// dropped by the capacity limit.
#pragma once

#include <cstdint>
#include <string>

#include "core/array.h"

namespace attnkit::ops {

struct MoeRouting {
  Array experts;  // int32 [N, top_k]: each row's top_k experts, best first (ties: the lower index)
  Array gates;    // float32 [N, top_k]: their probabilities, divided by the row's top_k sum when renormalized
};

// probs float32 [N, E] (rows of a softmax over the experts), 1 <= top_k <= E.
MoeRouting moe_route(const Array& probs, std::int64_t top_k, bool renormalize);

// The gradient of moe_route's gates with respect to probs: float32 [N, E],
// nonzero only at each row's chosen experts.
Array moe_route_backward(const Array& grad_gates, const Array& probs, const Array& experts, const Array& gates,
                         bool renormalize);

struct MoePlan {
  Array rows;     // int64 [N, top_k]: the grouped row of slot (n, j), or -1 when dropped
  Array offsets;  // int64 [E + 1]: expert e owns grouped rows offsets[e] .. offsets[e + 1]
  Array load;     // int64 [E]: the slots the router sent to each expert, dropped ones included
};

// Groups the slots by expert (a counting sort). Expert e keeps at most
// `capacity` slots (capacity < 0: no limit), taken in priority order: every
// token's first choice in token order, then every second choice, and so on
// (GShard), so a token loses its later choices before another its first.
// Within an expert the rows follow that order. experts int32 [N, top_k], each
// in [0, n_experts).
MoePlan moe_plan(const Array& experts, std::int64_t n_experts, std::int64_t capacity);

// The experts' weights: fc1 [E, H1, C] with H1 = d_ff (or 2 d_ff for
// "swiglu": the gate then the up projection), fc2 [E, C, d_ff]; biases [E, H1]
// and [E, C], each optional (undefined).
struct MoeExpertWeights {
  Array fc1_weight, fc1_bias, fc2_weight, fc2_bias;
};

// What the forward keeps for the backward, all float32 and grouped by expert.
struct MoeSaved {
  Array grouped_x;       // [S, C]: the tokens' rows
  Array hidden_pre;      // [S, H1]: fc1's output before the activation
  Array hidden;          // [S, d_ff]: after it
  Array expert_outputs;  // [S, C]: fc2's output, before the gate
};

struct MoeForward {
  Array y;  // [N, C]
  MoeSaved saved;
};

// y[n] = sum over kept slots j of gates[n, j] * FFN_{experts[n, j]}(x[n]),
// FFN_e(x) = fc2_e(activation(fc1_e(x))); a token whose slots were all dropped
// gets 0. activation: "relu", "gelu", "gelu_tanh" or "swiglu". x float32
// [N, C]; gates float32 [N, top_k]; rows and offsets from moe_plan.
MoeForward moe_ffn_forward(const Array& x, const Array& gates, const Array& rows, const Array& offsets,
                           const MoeExpertWeights& weights, const std::string& activation);

struct MoeGradients {
  Array dx;                   // [N, C]
  Array dgates;               // [N, top_k] (0 at dropped slots)
  MoeExpertWeights dweights;  // a bias's gradient only where the bias is defined
};

// The backward of moe_ffn_forward through the same grouping.
MoeGradients moe_ffn_backward(const Array& dy, const Array& gates, const Array& rows, const Array& offsets,
                              const MoeExpertWeights& weights, const MoeSaved& saved, const std::string& activation);

}  // namespace attnkit::ops
