// The AdamW update over a Vec, written once and compiled per ISA
// (isa/optim.cpp). Include a vec_<isa>.h first.
//
// The update of torch.optim.AdamW (Loshchilov & Hutter, "Decoupled weight
// decay regularization", ICLR 2019, algorithm 2, in PyTorch's form), step t:
//
//   p = p * (1 - lr * weight_decay)                 decoupled weight decay
//   m = m + (1 - beta1) * (g - m)                   first moment (a lerp)
//   v = beta2 * v + (1 - beta2) * g * g             second moment
//   p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
#pragma once

#include <cstdint>

namespace attnkit::cpu::optim_kernels {

// The step's constants, computed in double and rounded to float once.
struct AdamWConstants {
  float decay;  // 1 - lr * weight_decay, or 1 without decay
  float one_minus_beta1;
  float beta2;
  float one_minus_beta2;
  float bias_correction2_sqrt;  // sqrt(1 - beta2^t)
  float eps;
  float step_size;  // lr / (1 - beta1^t)
};

template <class V>
inline void adamw_update(float* param, float* exp_avg, float* exp_avg_sq, const float* grad, std::int64_t n,
                         const AdamWConstants& c) {
  const V decay = V::broadcast(c.decay);
  const V one_minus_beta1 = V::broadcast(c.one_minus_beta1);
  const V beta2 = V::broadcast(c.beta2);
  const V one_minus_beta2 = V::broadcast(c.one_minus_beta2);
  const V bias_correction2_sqrt = V::broadcast(c.bias_correction2_sqrt);
  const V eps = V::broadcast(c.eps);
  const V minus_step_size = V::broadcast(-c.step_size);
  auto update = [&](V p, V m, V v, V g, V& p_out, V& m_out, V& v_out) {
    m_out = fma(one_minus_beta1, g - m, m);
    v_out = fma(one_minus_beta2 * g, g, beta2 * v);
    const V denominator = sqrt(v_out) / bias_correction2_sqrt + eps;
    p_out = fma(minus_step_size, m_out / denominator, p * decay);
  };
  std::int64_t i = 0;
  for (; i + V::width <= n; i += V::width) {
    V p, m, v;
    update(V::load(param + i), V::load(exp_avg + i), V::load(exp_avg_sq + i), V::load(grad + i), p, m, v);
    p.store(param + i);
    m.store(exp_avg + i);
    v.store(exp_avg_sq + i);
  }
  if (i < n) {
    const int rest = int(n - i);
    V p, m, v;
    update(V::load_partial(param + i, rest), V::load_partial(exp_avg + i, rest), V::load_partial(exp_avg_sq + i, rest),
           V::load_partial(grad + i, rest), p, m, v);
    p.store_partial(param + i, rest);
    m.store_partial(exp_avg + i, rest);
    v.store_partial(exp_avg_sq + i, rest);
  }
}

}  // namespace attnkit::cpu::optim_kernels
