#include "cpu/embedding.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/threading.h"

namespace attnkit::cpu {
namespace {

// Below ~16K floats of rows a parallel region costs more than it saves.
constexpr std::int64_t kGrainFloats = 16384;

std::int64_t rows_per_grain(std::int64_t C) {
  return std::max<std::int64_t>(1, kGrainFloats / std::max<std::int64_t>(1, C));
}

template <typename Index>
void gather_rows(float* out, const Index* ids, const float* weight, std::int64_t N, std::int64_t C) {
  parallel_for(N, rows_per_grain(C), [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t n = begin; n < end; ++n)
      std::memcpy(out + n * C, weight + static_cast<std::int64_t>(ids[n]) * C,
                  static_cast<std::size_t>(C) * sizeof(float));
  });
}

// Deterministic scatter-add: a counting sort groups the token positions by
// id, stably, so each row of dweight is summed by one thread, in increasing
// token order. The sort is O(N + V) and serial; the O(N C) adds and the
// O(V C) zeroing are split over the rows.
template <typename Index>
void scatter_add_rows(float* dweight, const float* dout, const Index* ids, std::int64_t N, std::int64_t V,
                      std::int64_t C) {
  // tokens_of[first[v] .. first[v + 1]) are the positions n with ids[n] == v, increasing.
  std::vector<std::int64_t> first(static_cast<std::size_t>(V) + 1, 0);
  for (std::int64_t n = 0; n < N; ++n) ++first[static_cast<std::size_t>(ids[n]) + 1];
  for (std::int64_t v = 0; v < V; ++v) first[v + 1] += first[v];
  std::vector<std::int64_t> tokens_of(static_cast<std::size_t>(N));
  std::vector<std::int64_t> next(first.begin(), first.end() - 1);
  for (std::int64_t n = 0; n < N; ++n) tokens_of[next[static_cast<std::size_t>(ids[n])]++] = n;

  parallel_for(V, rows_per_grain(C), [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t v = begin; v < end; ++v) {
      float* row = dweight + v * C;
      std::fill(row, row + C, 0.0f);
      for (std::int64_t k = first[v]; k < first[v + 1]; ++k) {
        const float* source = dout + tokens_of[k] * C;
        for (std::int64_t c = 0; c < C; ++c) row[c] += source[c];
      }
    }
  });
}

}  // namespace

void embedding_forward(float* out, const std::int64_t* ids, const float* weight, std::int64_t N, std::int64_t C) {
  gather_rows(out, ids, weight, N, C);
}

void embedding_forward(float* out, const std::int32_t* ids, const float* weight, std::int64_t N, std::int64_t C) {
  gather_rows(out, ids, weight, N, C);
}

void embedding_backward(float* dweight, const float* dout, const std::int64_t* ids, std::int64_t N, std::int64_t V,
                        std::int64_t C) {
  scatter_add_rows(dweight, dout, ids, N, V, C);
}

void embedding_backward(float* dweight, const float* dout, const std::int32_t* ids, std::int64_t N, std::int64_t V,
                        std::int64_t C) {
  scatter_add_rows(dweight, dout, ids, N, V, C);
}

}  // namespace attnkit::cpu
