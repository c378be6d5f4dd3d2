#include "cpu/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/threading.h"
#include "cpu/random.h"

namespace attnkit::cpu {
namespace {

constexpr double kNegativeInfinity = -std::numeric_limits<double>::infinity();
constexpr double kLargestDouble = std::numeric_limits<double>::max();

// A candidate token and its unnormalized probability exp((z - z_max) / T).
struct Candidate {
  float weight;
  std::int32_t token;
};

// The order of the nucleus: most probable first, the lower id first among
// equals, so that the kept set is one well-defined set whatever the sort does.
bool more_probable(const Candidate& a, const Candidate& b) {
  return a.weight > b.weight || (a.weight == b.weight && a.token < b.token);
}

// A uniform double in [0, 1) with 53 random bits, from two 32-bit numbers.
double uniform_53(std::uint32_t high, std::uint32_t low) {
  const double high_27 = static_cast<double>(high >> 5);
  const double low_26 = static_cast<double>(low >> 6);
  return (high_27 * 67108864.0 + low_26) * (1.0 / 9007199254740992.0);  // 2^26, 2^-53
}

// The per-thread memory of one row: the penalized logits (in double, and
// clamped to its finite range, so that a finite logit stays finite under any
// finite penalty: an extreme one must not turn every token into -inf and
// leave no candidate) and the candidates.
struct RowScratch {
  std::vector<double> logits;
  std::vector<std::int32_t> order;
  std::vector<Candidate> candidates;
};

std::int64_t argmax(const double* z, std::int64_t vocab) {
  std::int64_t best = 0;
  for (std::int64_t j = 1; j < vocab; ++j)
    if (z[j] > z[best]) best = j;  // strict: ties keep the lower id
  return best;
}

// Moves the nucleus to the front and returns its size and total weight: the
// shortest prefix, in more_probable order, whose weight reaches top_p * total.
// A quickselect on weight mass rather than a sort: each round partitions the
// undecided range around a pivot and keeps only the side holding the
// boundary, so finding the nucleus costs O(n) on average even for a flat
// distribution (a sort of 50K candidates costs ~10x more). The kept ones end
// up in no particular order, which the draw does not need.
std::int64_t nucleus(std::vector<Candidate>& candidates, double total, double top_p, double* kept_total) {
  const double target = top_p * total;
  // candidates[0, low) are kept (each more probable than all of [low, high)),
  // weighing kept_mass < target; candidates[high, n) are not.
  std::int64_t low = 0, high = static_cast<std::int64_t>(candidates.size());
  double kept_mass = 0.0;
  while (high - low > 1) {
    // The pivot: the median of three, moved to the end of the range.
    const std::int64_t middle = low + (high - low) / 2;
    Candidate* c = candidates.data();
    if (more_probable(c[middle], c[low])) std::swap(c[middle], c[low]);
    if (more_probable(c[high - 1], c[low])) std::swap(c[high - 1], c[low]);
    if (more_probable(c[middle], c[high - 1])) std::swap(c[middle], c[high - 1]);
    const Candidate pivot = c[high - 1];
    // [low, split): more probable than the pivot; then the pivot at split.
    Candidate* split_at =
        std::partition(c + low, c + high - 1, [&](const Candidate& x) { return more_probable(x, pivot); });
    const std::int64_t split = split_at - c;
    std::swap(c[split], c[high - 1]);
    double upper = 0.0;
    for (std::int64_t i = low; i < split; ++i) upper += c[i].weight;
    if (kept_mass + upper >= target) {
      high = split;  // the boundary lies among the more probable ones
    } else if (kept_mass + upper + pivot.weight >= target) {
      *kept_total = kept_mass + upper + pivot.weight;
      return split + 1;  // the pivot completes the nucleus
    } else {
      kept_mass += upper + pivot.weight;
      low = split + 1;
    }
  }
  // One undecided candidate left: it completes the nucleus (or, when
  // rounding left the sum of all just short of top_p * total, ends it).
  if (low < high) {
    kept_mass += candidates[low].weight;
    ++low;
  }
  *kept_total = kept_mass;
  return low;
}

std::int64_t sample_row(RowScratch& scratch, const float* row, const std::uint8_t* seen, std::int64_t vocab,
                        const SamplingSettings& s, double uniform) {
  std::vector<double>& z = scratch.logits;
  z.resize(static_cast<std::size_t>(vocab));
  const bool penalize = seen != nullptr && s.repetition_penalty != 1.0;
  for (std::int64_t j = 0; j < vocab; ++j) {
    double value = row[j];
    if (penalize && seen[j] != 0 && std::isfinite(value)) {
      value = value > 0.0 ? value / s.repetition_penalty : value * s.repetition_penalty;
      value = std::clamp(value, -kLargestDouble, kLargestDouble);
    }
    z[j] = value;
  }
  if (s.temperature == 0.0) return argmax(z.data(), vocab);

  // Candidates: every token with a logit above -inf (the others have
  // probability 0), then the top_k of them by (logit, lower id).
  std::vector<std::int32_t>& order = scratch.order;
  order.clear();
  for (std::int64_t j = 0; j < vocab; ++j)
    if (z[j] > kNegativeInfinity) order.push_back(static_cast<std::int32_t>(j));
  std::int64_t n = static_cast<std::int64_t>(order.size());
  if (s.top_k > 0 && s.top_k < n) {
    std::nth_element(order.begin(), order.begin() + (s.top_k - 1), order.end(),
                     [&](std::int32_t a, std::int32_t b) { return z[a] > z[b] || (z[a] == z[b] && a < b); });
    n = s.top_k;
  }
  double z_max = kNegativeInfinity;
  for (std::int64_t i = 0; i < n; ++i) z_max = std::max(z_max, z[order[i]]);

  // softmax(z / T) restricted to the candidates, shifted by the maximum so
  // every exponent is <= 0; the normalizer is summed in double.
  std::vector<Candidate>& candidates = scratch.candidates;
  candidates.resize(static_cast<std::size_t>(n));
  double total = 0.0;
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int32_t token = order[i];
    const float weight = std::exp(static_cast<float>((z[token] - z_max) / s.temperature));
    candidates[i] = {weight, token};
    total += weight;
  }
  double kept_total = total;
  if (s.top_p < 1.0) { n = nucleus(candidates, total, s.top_p, &kept_total); }

  // Inverse CDF over the kept candidates, in their current order.
  const double target = uniform * kept_total;
  double cumulative = 0.0;
  std::int64_t last_possible = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    if (candidates[i].weight == 0.0f) continue;
    cumulative += candidates[i].weight;
    last_possible = i;
    if (cumulative > target) return candidates[i].token;
  }
  // Rounding put the target at the very end: the last token that can occur.
  return candidates[last_possible].token;
}

}  // namespace

void sample_tokens(std::int64_t* tokens, const float* logits, const std::uint8_t* seen, std::int64_t batch,
                   std::int64_t vocab, const SamplingSettings& settings, std::uint64_t seed, std::uint64_t offset) {
  // Greedy decoding draws nothing.
  const bool greedy = settings.temperature == 0.0;
  std::vector<std::uint32_t> bits(greedy ? 0 : static_cast<std::size_t>(2 * batch));
  if (!greedy) random_bits(bits.data(), 2 * batch, seed, offset);
  // A row is a few passes over the vocabulary: rows are spread over threads
  // once there are ~32K logits per thread.
  const std::int64_t grain = std::max<std::int64_t>(1, 32768 / std::max<std::int64_t>(1, vocab));
  parallel_for(batch, grain, [&](std::int64_t b0, std::int64_t b1) {
    RowScratch scratch;
    for (std::int64_t b = b0; b < b1; ++b) {
      const double uniform = greedy ? 0.0 : uniform_53(bits[2 * b], bits[2 * b + 1]);
      tokens[b] = sample_row(scratch, logits + b * vocab, seen == nullptr ? nullptr : seen + b * vocab, vocab, settings,
                             uniform);
    }
  });
}

}  // namespace attnkit::cpu
