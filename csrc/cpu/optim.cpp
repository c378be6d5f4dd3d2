#include "cpu/optim.h"

#include <algorithm>
#include <vector>

#include "core/threading.h"
#include "cpu/dispatch.h"
#include "cpu/optim_kernels.h"

namespace attnkit::cpu {

namespace {

// A chunk of 16K floats (64 KiB per array) is enough work for a thread to be
// worth waking, and a model's many small tensors (biases, norms) each form
// one small chunk.
constexpr std::int64_t kChunk = 16384;

struct Chunk {
  std::size_t tensor;
  std::int64_t begin;
  std::int64_t count;
};

template <typename Sizes>
std::vector<Chunk> make_chunks(std::size_t tensors, const Sizes& size_of, std::int64_t& total) {
  std::vector<Chunk> chunks;
  total = 0;
  for (std::size_t t = 0; t < tensors; ++t) {
    const std::int64_t n = size_of(t);
    total += n;
    for (std::int64_t begin = 0; begin < n; begin += kChunk) chunks.push_back({t, begin, std::min(kChunk, n - begin)});
  }
  return chunks;
}

// Runs body(chunk) over the chunks, on one thread when the whole list is
// smaller than one chunk's worth of work.
template <typename Body>
void for_each_chunk(const std::vector<Chunk>& chunks, std::int64_t total, const Body& body) {
  const std::int64_t count = static_cast<std::int64_t>(chunks.size());
  const std::int64_t grain = total < kChunk ? std::max<std::int64_t>(1, count) : 1;
  parallel_for(count, grain, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t c = begin; c < end; ++c) body(chunks[static_cast<std::size_t>(c)]);
  });
}

// sum x[i]^2 in double with 8 running sums (lane k takes i = k mod 8), added
// up pairwise at the end: a fixed order the compiler can vectorize without
// reassociating anything.
double chunk_sum_of_squares(const float* x, std::int64_t n) {
  constexpr int kLanes = 8;
  double sums[kLanes] = {};
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) {
      const double value = x[i + k];
      sums[k] += value * value;
    }
  for (int k = 0; i < n; ++i, ++k) {
    const double value = x[i];
    sums[k] += value * value;
  }
  return ((sums[0] + sums[1]) + (sums[2] + sums[3])) + ((sums[4] + sums[5]) + (sums[6] + sums[7]));
}

}  // namespace

void adamw_step(const AdamWTensors* tensors, std::size_t count, const optim_kernels::AdamWConstants& constants) {
  optim_kernels::AdamWConstants without_decay = constants;
  without_decay.decay = 1.0f;
  std::int64_t total = 0;
  const std::vector<Chunk> chunks = make_chunks(count, [&](std::size_t t) { return tensors[t].n; }, total);
  const auto adamw_update = active_kernels().optim->adamw_update;
  for_each_chunk(chunks, total, [&](const Chunk& chunk) {
    const AdamWTensors& t = tensors[chunk.tensor];
    const optim_kernels::AdamWConstants& c = t.decay ? constants : without_decay;
    float* param = t.param + chunk.begin;
    float* exp_avg = t.exp_avg + chunk.begin;
    float* exp_avg_sq = t.exp_avg_sq + chunk.begin;
    const float* grad = t.grad + chunk.begin;
    adamw_update(param, exp_avg, exp_avg_sq, grad, chunk.count, c);
  });
}

double sum_of_squares(const FloatSpan* spans, std::size_t count) {
  std::int64_t total = 0;
  const std::vector<Chunk> chunks = make_chunks(count, [&](std::size_t s) { return spans[s].n; }, total);
  std::vector<double> partial(chunks.size());
  const Chunk* first = chunks.data();
  for_each_chunk(chunks, total, [&](const Chunk& chunk) {
    partial[static_cast<std::size_t>(&chunk - first)] =
        chunk_sum_of_squares(spans[chunk.tensor].data + chunk.begin, chunk.count);
  });
  double sum = 0.0;
  for (double value : partial) sum += value;
  return sum;
}

void scale_in_place(const FloatSpan* spans, std::size_t count, float factor) {
  std::int64_t total = 0;
  const std::vector<Chunk> chunks = make_chunks(count, [&](std::size_t s) { return spans[s].n; }, total);
  for_each_chunk(chunks, total, [&](const Chunk& chunk) {
    float* x = spans[chunk.tensor].data + chunk.begin;
    for (std::int64_t i = 0; i < chunk.count; ++i) x[i] *= factor;
  });
}

}  // namespace attnkit::cpu
