// Tools for the row kernels (softmax_kernels.h, norm_kernels.h,
// loss_kernels.h): loads and stores of a row's vectors including its tail, and
// sums along a row that are exact to about one rounding. Include a
// vec_<isa>.h first.
//
// Why compensated sums: the rule these kernels are held to is "no more than
// twice the error of a naive float32 computation", and numpy's naive sums are
// pairwise. A softmax's largest outputs carry the relative error of the row's
// sum of exponentials, a LayerNorm's outputs that of the mean and variance;
// summed plainly (or even pairwise) ours would be as likely as numpy's to be
// the worse one, and twice as bad now and then. Each addition here also
// recovers its own rounding error exactly (TwoSum: Knuth, TAOCP vol. 2,
// 4.2.2), and the errors are added up beside the sum: the result is as
// accurate as if it had been accumulated in twice the precision and rounded
// once (Ogita, Rump and Oishi, "Accurate sum and dot product", 2005), for
// about five more additions per vector - cheap next to the memory traffic.
//
// The translation units that include this must not let the compiler fuse a
// multiply and an add into an FMA on its own (see the pragma at their top):
// TwoSum and the product errors rely on every operation rounding as written.
//
// The order of operations depends on the row's length alone, so a row gives
// the same bits whichever thread computes it.
#pragma once

#include <cstdint>

namespace attnkit::cpu::row_reduction {

// The `count` <= V::width elements at p (a whole vector or a row's tail; the
// missing lanes read as 0 and are not written).
template <class V>
inline V load_n(const float* p, int count) {
  return count == V::width ? V::load(p) : V::load_partial(p, count);
}
template <class V>
inline void store_n(V v, float* p, int count) {
  if (count == V::width) v.store(p);
  else v.store_partial(p, count);
}
// How many of the row's n elements the vector at i holds.
template <class V>
inline int lanes_at(std::int64_t i, std::int64_t n) {
  return n - i >= V::width ? V::width : int(n - i);
}

// A per-row number known in double, held as two floats high + low, for the
// few places where one float's rounding of it would show in the result.
template <class V>
struct DoubleFloat {
  V high;
  V low;
};

template <class V>
inline DoubleFloat<V> split(double value) {
  const float high = static_cast<float>(value);
  return {V::broadcast(high), V::broadcast(static_cast<float>(value - high))};
}

// x * (high + low) rounded about once: the product with `high` is split into
// its rounded value and its exact error.
template <class V>
inline V multiply(V x, const DoubleFloat<V>& factor) {
  const V product = x * factor.high;
  return product + fma(x, factor.low, product_error(x, factor.high, product));
}

// (value + tail) * (high + low) rounded once, for a value known as a float
// plus a small tail: value * high split exactly, the small terms added to its
// error, one final rounding.
template <class V>
inline V multiply_with_tail(V value, V tail, const DoubleFloat<V>& factor) {
  const V product = value * factor.high;
  return product + fma(tail, factor.high, fma(value, factor.low, product_error(value, factor.high, product)));
}

// The exact rounding error of s = fl(a + b): a + b - s (TwoSum).
template <class V>
inline V sum_error(V a, V b, V s) {
  const V b_part = s - a;
  return (a - (s - b_part)) + (b - b_part);
}

// Per lane, a sum and the sum of the rounding errors made along the way.
template <class V>
struct CompensatedSum {
  V sum = V::broadcast(0.0f);
  V error = V::broadcast(0.0f);

  void add(V x) {
    const V total = sum + x;
    error = error + sum_error(sum, x, total);
    sum = total;
  }
  // Adds a * b, counting the product's rounding error too.
  void add_product(V a, V b) {
    const V product = a * b;
    add(product);
    error = error + product_error(a, b, product);
  }
  // Multiplies the sum by a (the online softmax's rescaling), exactly but for
  // the error term's own rounding.
  void scale(V a) {
    const V product = sum * a;
    error = fma(error, a, product_error(sum, a, product));
    sum = product;
  }
  void merge(const CompensatedSum& other) {
    add(other.sum);
    error = error + other.error;
  }
  // The lanes' sums added with TwoSum as well, their errors apart; the sum
  // and its error come back together as a double (exact: two floats always
  // add exactly in double). Callers finish their per-row arithmetic (means,
  // variances, square roots, logarithms) in double and round once.
  double total() const {
    float sums[V::width];
    float errors[V::width];
    sum.store(sums);
    error.store(errors);
    float s = 0.0f;
    float e = 0.0f;
    for (int lane = 0; lane < V::width; ++lane) {
      const float t = s + sums[lane];
      const float part = t - s;
      e += ((s - (t - part)) + (sums[lane] - part)) + errors[lane];
      s = t;
    }
    // With an infinity among the terms the error terms are NaN (inf - inf);
    // the plain sum is then the answer (inf, or NaN for inf - inf).
    if (!(s - s == 0.0f)) return static_cast<double>(s);
    return static_cast<double>(s) + static_cast<double>(e);
  }
};

// Sums down the columns of a block of rows (weight and bias gradients): in
// column_sums[2, C], row 0 holds the running sums and row 1 the sums of their
// rounding errors. Each call adds one row's vector at column i, compensated.
template <class V>
inline void add_to_column_sums(float* column_sums, std::int64_t C, std::int64_t i, int lanes, V value) {
  CompensatedSum<V> acc{load_n<V>(column_sums + i, lanes), load_n<V>(column_sums + C + i, lanes)};
  acc.add(value);
  store_n(acc.sum, column_sums + i, lanes);
  store_n(acc.error, column_sums + C + i, lanes);
}
// Adds a * (value + tail) * (factor.high + factor.low), every product's
// rounding counted (dweight's dy * x_hat, with x_hat = (value + tail) * rstd
// never rounded to a float).
template <class V>
inline void add_scaled_products_to_column_sums(float* column_sums, std::int64_t C, std::int64_t i, int lanes, V a,
                                               V value, V tail, const DoubleFloat<V>& factor) {
  CompensatedSum<V> acc{load_n<V>(column_sums + i, lanes), load_n<V>(column_sums + C + i, lanes)};
  const V product = a * value;
  const V product_rounding = product_error(a, value, product);
  acc.add_product(product, factor.high);
  acc.error = acc.error + fma(product, factor.low, fma(product_rounding, factor.high, (a * tail) * factor.high));
  store_n(acc.sum, column_sums + i, lanes);
  store_n(acc.error, column_sums + C + i, lanes);
}

}  // namespace attnkit::cpu::row_reduction
