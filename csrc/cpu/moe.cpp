#include "cpu/moe.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/threading.h"
#include "cpu/activation.h"
#include "cpu/gemm.h"

namespace attnkit::cpu {
namespace {

// Below ~16K floats of rows a parallel region costs more than it saves.
constexpr std::int64_t kGrainFloats = 16384;

std::int64_t rows_per_grain(std::int64_t C) {
  return std::max<std::int64_t>(1, kGrainFloats / std::max<std::int64_t>(1, C));
}

std::int64_t fc1_width(const MoeExperts& experts) {
  return experts.activation == MoeActivation::swiglu ? 2 * experts.d_ff : experts.d_ff;
}

GemmActivation fused_activation(MoeActivation activation) {
  switch (activation) {
    case MoeActivation::relu: return GemmActivation::relu;
    case MoeActivation::gelu: return GemmActivation::gelu;
    case MoeActivation::gelu_tanh: return GemmActivation::gelu_tanh;
    case MoeActivation::swiglu: break;
  }
  return GemmActivation::none;  // swiglu is applied after fc1, by its own kernel
}

// out[n] = sum over token n's kept slots j (rows[n k + j] >= 0) of
// gates[n k + j] * grouped[row] (gates null: weight 1), in slot order j = 0,
// 1, ..., one thread per token, so the result does not depend on the thread
// count. The forward's combine and the backward's gather of dx.
void sum_slots_per_token(float* out, const float* grouped, const std::int64_t* rows, const float* gates, std::int64_t N,
                         std::int64_t k, std::int64_t C) {
  parallel_for(N, rows_per_grain(C * k), [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t n = begin; n < end; ++n) {
      float* target = out + n * C;
      std::fill(target, target + C, 0.0f);
      for (std::int64_t j = 0; j < k; ++j) {
        const std::int64_t row = rows[n * k + j];
        if (row < 0) continue;
        const float* source = grouped + row * C;
        if (gates == nullptr) {
          for (std::int64_t c = 0; c < C; ++c) target[c] += source[c];
        } else {
          const float gate = gates[n * k + j];
          for (std::int64_t c = 0; c < C; ++c) target[c] += gate * source[c];
        }
      }
    }
  });
}

}  // namespace

void moe_route(std::int32_t* experts, float* gates, const float* probs, std::int64_t N, std::int64_t E, std::int64_t k,
               bool renormalize) {
  parallel_for(N, rows_per_grain(E), [&](std::int64_t begin, std::int64_t end) {
    std::vector<char> taken(static_cast<std::size_t>(E));
    for (std::int64_t n = begin; n < end; ++n) {
      const float* p = probs + n * E;
      std::int32_t* chosen = experts + n * k;
      float* g = gates + n * k;
      std::fill(taken.begin(), taken.end(), 0);
      // k passes of an argmax: k is small (2 in Mixtral, 8 at most in
      // practice), and a strict '>' keeps the lower index on ties. A NaN is
      // never larger, so a row of NaNs still picks k distinct experts.
      double sum = 0.0;
      for (std::int64_t j = 0; j < k; ++j) {
        std::int64_t best = -1;
        float best_p = 0.0f;
        for (std::int64_t e = 0; e < E; ++e) {
          if (taken[e]) continue;
          if (best < 0 || p[e] > best_p) best = e, best_p = p[e];
        }
        taken[best] = 1;
        chosen[j] = static_cast<std::int32_t>(best);
        g[j] = best_p;
        sum += best_p;
      }
      if (renormalize) {
        for (std::int64_t j = 0; j < k; ++j) g[j] = static_cast<float>(g[j] / sum);
      }
    }
  });
}

void moe_route_backward(float* dprobs, const float* dgates, const float* probs, const std::int32_t* experts,
                        const float* gates, std::int64_t N, std::int64_t E, std::int64_t k, bool renormalize) {
  parallel_for(N, rows_per_grain(E), [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t n = begin; n < end; ++n) {
      float* dp = dprobs + n * E;
      const float* p = probs + n * E;
      const std::int32_t* chosen = experts + n * k;
      const float* dg = dgates + n * k;
      const float* g = gates + n * k;
      std::fill(dp, dp + E, 0.0f);
      if (!renormalize) {
        for (std::int64_t j = 0; j < k; ++j) dp[chosen[j]] = dg[j];
        continue;
      }
      double sum = 0.0, dot = 0.0;
      for (std::int64_t j = 0; j < k; ++j) {
        sum += p[chosen[j]];
        dot += static_cast<double>(dg[j]) * g[j];
      }
      for (std::int64_t j = 0; j < k; ++j) dp[chosen[j]] = static_cast<float>((dg[j] - dot) / sum);
    }
  });
}

void moe_plan(std::int64_t* rows, std::int64_t* offsets, std::int64_t* load, const std::int32_t* experts,
              std::int64_t N, std::int64_t E, std::int64_t k, std::int64_t capacity) {
  // First pass, in priority order (choice j, then token n): each slot's place
  // among its expert's kept slots, or -1.
  std::fill(load, load + E, 0);
  std::vector<std::int64_t> kept(static_cast<std::size_t>(E), 0);
  for (std::int64_t j = 0; j < k; ++j) {
    for (std::int64_t n = 0; n < N; ++n) {
      const std::int32_t e = experts[n * k + j];
      ++load[e];
      rows[n * k + j] = capacity < 0 || kept[e] < capacity ? kept[e]++ : -1;
    }
  }
  offsets[0] = 0;
  for (std::int64_t e = 0; e < E; ++e) offsets[e + 1] = offsets[e] + kept[e];
  for (std::int64_t slot = 0; slot < N * k; ++slot)
    if (rows[slot] >= 0) rows[slot] += offsets[experts[slot]];
}

void moe_ffn_forward(float* y, const MoeGroupedBuffers& saved, const float* x, const float* gates,
                     const std::int64_t* rows, const std::int64_t* offsets, const MoeExperts& experts, std::int64_t N,
                     std::int64_t k) {
  const std::int64_t E = experts.n_experts, C = experts.d_model, F = experts.d_ff, H1 = fc1_width(experts);
  const std::size_t row_bytes = static_cast<std::size_t>(C) * sizeof(float);
  // Dispatch: every kept slot copies its token's row to its grouped row.
  parallel_for(N, rows_per_grain(C * k), [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t n = begin; n < end; ++n)
      for (std::int64_t j = 0; j < k; ++j)
        if (rows[n * k + j] >= 0) std::memcpy(saved.grouped_x + rows[n * k + j] * C, x + n * C, row_bytes);
  });
  // Each expert: two GEMMs over its rows (each GEMM threaded on its own).
  const GemmActivation activation = fused_activation(experts.activation);
  for (std::int64_t e = 0; e < E; ++e) {
    const std::int64_t first = offsets[e], count = offsets[e + 1] - offsets[e];
    if (count == 0) continue;
    const float* fc1_bias = experts.fc1_bias ? experts.fc1_bias + e * H1 : nullptr;
    const float* fc2_bias = experts.fc2_bias ? experts.fc2_bias + e * C : nullptr;
    float* hidden_pre = saved.hidden_pre + first * H1;
    float* hidden = saved.hidden + first * F;
    if (experts.activation == MoeActivation::swiglu) {
      gemm(hidden_pre, H1, saved.grouped_x + first * C, C, false, experts.fc1_weight + e * H1 * C, C, true, count, H1,
           C, 1.0f, 0.0f, {fc1_bias, GemmActivation::none, nullptr});
      swiglu_forward(hidden, hidden_pre, count, F);
    } else {
      gemm(hidden, F, saved.grouped_x + first * C, C, false, experts.fc1_weight + e * H1 * C, C, true, count, F, C,
           1.0f, 0.0f, {fc1_bias, activation, hidden_pre});
    }
    gemm(saved.expert_outputs + first * C, C, hidden, F, false, experts.fc2_weight + e * C * F, F, true, count, C, F,
         1.0f, 0.0f, {fc2_bias, GemmActivation::none, nullptr});
  }
  // Combine: each token sums its slots, weighted by their gates.
  sum_slots_per_token(y, saved.expert_outputs, rows, gates, N, k, C);
}

void moe_ffn_backward(float* dx, float* dgates, const MoeExpertGradients& grads, const float* dy, const float* gates,
                      const std::int64_t* rows, const std::int64_t* offsets, const MoeExperts& experts,
                      const MoeGroupedBuffers& saved, std::int64_t N, std::int64_t k) {
  const std::int64_t E = experts.n_experts, C = experts.d_model, F = experts.d_ff, H1 = fc1_width(experts);
  const std::int64_t S = offsets[E];
  // The gradient of each grouped output row is its token's dy times the gate;
  // the gate's gradient is dy . (the expert's output).
  std::vector<float> grouped_grad(static_cast<std::size_t>(S * C));
  parallel_for(N, rows_per_grain(C * k), [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t n = begin; n < end; ++n) {
      const float* d = dy + n * C;
      for (std::int64_t j = 0; j < k; ++j) {
        const std::int64_t row = rows[n * k + j];
        if (row < 0) {
          dgates[n * k + j] = 0.0f;
          continue;
        }
        const float gate = gates[n * k + j];
        const float* out = saved.expert_outputs + row * C;
        float* g = grouped_grad.data() + row * C;
        float dot = 0.0f;
        for (std::int64_t c = 0; c < C; ++c) {
          g[c] = gate * d[c];
          dot += d[c] * out[c];
        }
        dgates[n * k + j] = dot;
      }
    }
  });
  std::vector<float> hidden_grad(static_cast<std::size_t>(S * F));
  std::vector<float> hidden_pre_grad(experts.activation == MoeActivation::swiglu ? static_cast<std::size_t>(S * H1)
                                                                                 : 0);
  std::vector<float> grouped_x_grad(static_cast<std::size_t>(S * C));
  for (std::int64_t e = 0; e < E; ++e) {
    const std::int64_t first = offsets[e], count = offsets[e + 1] - offsets[e];
    float* dfc1_weight = grads.dfc1_weight + e * H1 * C;
    float* dfc2_weight = grads.dfc2_weight + e * C * F;
    float* dfc1_bias = grads.dfc1_bias ? grads.dfc1_bias + e * H1 : nullptr;
    float* dfc2_bias = grads.dfc2_bias ? grads.dfc2_bias + e * C : nullptr;
    if (count == 0) {  // an expert no token reached: its gradients are 0
      std::fill(dfc1_weight, dfc1_weight + H1 * C, 0.0f);
      std::fill(dfc2_weight, dfc2_weight + C * F, 0.0f);
      if (dfc1_bias) std::fill(dfc1_bias, dfc1_bias + H1, 0.0f);
      if (dfc2_bias) std::fill(dfc2_bias, dfc2_bias + C, 0.0f);
      continue;
    }
    const float* dout = grouped_grad.data() + first * C;
    const float* x_rows = saved.grouped_x + first * C;
    const float* hidden = saved.hidden + first * F;
    const float* hidden_pre = saved.hidden_pre + first * H1;
    float* dhidden = hidden_grad.data() + first * F;
    // fc2: dW2 = dOut^T H, db2 = the column sums of dOut, dH = dOut W2.
    gemm(dfc2_weight, F, dout, C, true, hidden, F, false, C, F, count, 1.0f, 0.0f);
    if (dfc2_bias) column_sum(dfc2_bias, dout, count, C);
    gemm(dhidden, F, dout, C, false, experts.fc2_weight + e * C * F, F, false, count, F, C, 1.0f, 0.0f);
    // Through the activation, in place but for swiglu (whose input is twice as wide).
    float* dhidden_pre = dhidden;
    switch (experts.activation) {
      case MoeActivation::relu: relu_backward(dhidden, dhidden, hidden_pre, count * F); break;
      case MoeActivation::gelu: gelu_backward(dhidden, dhidden, hidden_pre, count * F, GeluApproximation::none); break;
      case MoeActivation::gelu_tanh:
        gelu_backward(dhidden, dhidden, hidden_pre, count * F, GeluApproximation::tanh);
        break;
      case MoeActivation::swiglu:
        dhidden_pre = hidden_pre_grad.data() + first * H1;
        swiglu_backward(dhidden_pre, dhidden, hidden_pre, count, F);
        break;
    }
    // fc1: dW1 = dHpre^T X, db1 = the column sums of dHpre, dX = dHpre W1.
    gemm(dfc1_weight, C, dhidden_pre, H1, true, x_rows, C, false, H1, C, count, 1.0f, 0.0f);
    if (dfc1_bias) column_sum(dfc1_bias, dhidden_pre, count, H1);
    gemm(grouped_x_grad.data() + first * C, C, dhidden_pre, H1, false, experts.fc1_weight + e * H1 * C, C, false, count,
         C, H1, 1.0f, 0.0f);
  }
  // Each token gathers its kept slots' gradients.
  sum_slots_per_token(dx, grouped_x_grad.data(), rows, nullptr, N, k, C);
}

}  // namespace attnkit::cpu
