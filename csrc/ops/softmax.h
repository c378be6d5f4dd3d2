// Softmax ops: the checked, public C++ entry points. The softmax runs over the
// last dimension; every other dimension counts rows.
#pragma once

#include "core/array.h"

namespace attnkit::ops {

// y = softmax(scale * x) (or log_softmax when `log`) along the last dimension;
// x float32 with at least one dimension, scale finite and > 0.
Array softmax_forward(const Array& x, double scale, bool log);
// dx from grad_output and the forward's output y (float32, one shape).
Array softmax_backward(const Array& grad_output, const Array& y, double scale, bool log);

}  // namespace attnkit::ops
