// Transcendental functions over a Vec (see vec_generic.h), written once and
// compiled per ISA. Include a vec_<isa>.h first, inside nothing: the templates
// pick up the ISA's Vec through argument-dependent lookup.
#pragma once

namespace attnkit::cpu::vec_math {

// ln 2 split in two: kLn2Hi has few enough significant bits that n * kLn2Hi is
// exact for |n| < 2^10, so x - n*ln2 loses nothing in the reduction.
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693145751953125f;
constexpr float kLn2Lo = 1.42860682030941723212e-6f;

// e^(a + b), where a + b is the exact argument split in two floats (b may be
// the low part of a double-float product). Keeping b separate through the
// range reduction keeps a's large magnitude from swallowing b's digits, which
// matters for exp(-x^2/2) in the Gaussian tails.
//
// Accuracy: about 1 ulp where the result is a normal float; subnormal results
// round once (the scaling is split into two exact powers of two), results
// below 2^-150 are 0, above FLT_MAX +inf, and NaN stays NaN.
template <class V>
inline V exp_sum(V a, V b) {
  // n from the clamped sum (never NaN, so the integer conversion is defined);
  // the clamps on a alone keep NaN (constant first, see Vec's max/min).
  V n = round_nearest(min(V::broadcast(129.0f), max((a + b) * V::broadcast(kLog2e), V::broadcast(-152.0f))));
  a = min(V::broadcast(90.0f), max(V::broadcast(-106.0f), a));
  // r = a + b - n*ln2 in [-ln2/2, ln2/2] (slightly wider when clamped).
  V r = fma(-n, V::broadcast(kLn2Hi), a) + fma(-n, V::broadcast(kLn2Lo), b);
  // Taylor series of e^r to degree 7: the truncation error on |r| <= 0.347 is
  // 0.347^8/8! < 6e-9, below float rounding.
  V p = V::broadcast(1.0f / 5040.0f);
  p = fma(p, r, V::broadcast(1.0f / 720.0f));
  p = fma(p, r, V::broadcast(1.0f / 120.0f));
  p = fma(p, r, V::broadcast(1.0f / 24.0f));
  p = fma(p, r, V::broadcast(1.0f / 6.0f));
  p = fma(p, r, V::broadcast(0.5f));
  p = fma(p, r, V::broadcast(1.0f));
  p = fma(p, r, V::broadcast(1.0f));
  // 2^n as 2^n1 * 2^n2 with both halves in [-76, 65]: each factor is a normal
  // float, so only the last multiply rounds, also when the result is subnormal.
  V n1 = truncate(n * V::broadcast(0.5f));
  V n2 = n - n1;
  return p * pow2_integer(n1) * pow2_integer(n2);
}

template <class V>
inline V exp(V x) {
  return exp_sum(x, V::broadcast(0.0f));
}

// The sum of a vector's lanes: each ISA's tree of halves (reduce_add).
template <class V>
inline float lane_sum(V x) {
  return reduce_add(x);
}

}  // namespace attnkit::cpu::vec_math
