// Embedding ops: the checked, public C++ entry points.
#pragma once

#include <cstdint>

#include "core/array.h"

namespace attnkit::ops {

// out[..., :] = weight[indices[...], :]. indices int32 or int64 of any shape,
// every id in [0, V) (ValueError naming the first bad id otherwise); weight
// float32 [V, C]; out float32 [*indices.shape, C].
Array embedding_forward(const Array& indices, const Array& weight);

// dweight [V, C]: row v sums grad_output's rows at the positions whose id is
// v, in position order (bitwise the same for any thread count).
// grad_output float32 [*indices.shape, C]; V = num_embeddings.
Array embedding_backward(const Array& grad_output, const Array& indices, std::int64_t num_embeddings);

}  // namespace attnkit::ops
