// CPU embedding kernels: a row gather forward, and a deterministic
// scatter-add backward.
#pragma once

#include <cstdint>

namespace attnkit::cpu {

// out[n, :] = weight[ids[n], :] for n < N; weight [V, C], out [N, C]. The ids
// were checked to lie in [0, V).
void embedding_forward(float* out, const std::int64_t* ids, const float* weight, std::int64_t N, std::int64_t C);
void embedding_forward(float* out, const std::int32_t* ids, const float* weight, std::int64_t N, std::int64_t C);

// dweight[v, :] = sum of dout[n, :] over the n with ids[n] == v, accumulated
// from 0 in increasing n; rows no id names are 0. dweight [V, C], dout [N, C].
// Every row's sum has that one order whatever the thread count, so the result
// is bitwise the same for any number of threads (and equals a serial
// float32 loop over n).
void embedding_backward(float* dweight, const float* dout, const std::int64_t* ids, std::int64_t N, std::int64_t V,
                        std::int64_t C);
void embedding_backward(float* dweight, const float* dout, const std::int32_t* ids, std::int64_t N, std::int64_t V,
                        std::int64_t C);

}  // namespace attnkit::cpu
