#include "cpu/position.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/threading.h"

namespace attnkit::cpu {
namespace {

// Below ~16K outputs a parallel region costs more than it saves.
constexpr std::int64_t kGrainFloats = 16384;

// Angles are evaluated exactly (cos and sin in double) at every position
// that is a multiple of kAnchorSpacing; the positions in between step there
// from the anchor below by rotating (cos, sin) by one position's angle, in
// double. 31 steps add at most about 31 * 2^-52 = 7e-15 of absolute error:
// the order of the rounding error of the double angle p * w itself at
// positions near 100, and far below the rounding to float of any value
// above 1e-6 in magnitude; while a step costs a few multiplies instead of a
// sin and a cos. Anchoring on absolute positions makes every
// value a function of (position, pair) alone: a table for positions 20..29
// equals rows 20..29 of the table for 0..29, bit for bit, so decoding one
// position at a time reproduces the full-sequence result.
constexpr std::int64_t kAnchorSpacing = 32;

std::int64_t rows_per_grain(std::int64_t row_size) {
  return std::max<std::int64_t>(1, kGrainFloats / std::max<std::int64_t>(1, row_size));
}

// frequencies[i] = base^(-2i/dim), in double.
std::vector<double> inverse_frequencies(double base, std::int64_t pairs, std::int64_t dim) {
  std::vector<double> frequencies(static_cast<std::size_t>(pairs));
  for (std::int64_t i = 0; i < pairs; ++i)
    frequencies[i] = std::pow(base, -static_cast<double>(2 * i) / static_cast<double>(dim));
  return frequencies;
}

// The cos and sin of position * frequencies[i], in double, by the scheme
// above: exact at an anchor, then one rotation per position. Every path to
// a position (a run of positions, or one position alone) does the same
// arithmetic, so the values are a function of (position, pair) alone.
class Angles {
 public:
  explicit Angles(const std::vector<double>& frequencies)
      : frequencies_(frequencies), step_cosines_(frequencies.size()), step_sines_(frequencies.size()) {
    for (std::size_t i = 0; i < frequencies.size(); ++i) {
      step_cosines_[i] = std::cos(frequencies[i]);
      step_sines_[i] = std::sin(frequencies[i]);
    }
  }

  std::int64_t pairs() const { return static_cast<std::int64_t>(frequencies_.size()); }

  void at_anchor(std::int64_t anchor, double* cosines, double* sines) const {
    for (std::int64_t i = 0; i < pairs(); ++i) {
      const double angle = static_cast<double>(anchor) * frequencies_[i];
      cosines[i] = std::cos(angle);
      sines[i] = std::sin(angle);
    }
  }

  // From the angles of position p to those of p + 1.
  void step(double* cosines, double* sines) const {
    for (std::int64_t i = 0; i < pairs(); ++i) {
      const double c = cosines[i], s = sines[i];
      cosines[i] = c * step_cosines_[i] - s * step_sines_[i];
      sines[i] = s * step_cosines_[i] + c * step_sines_[i];
    }
  }

 private:
  const std::vector<double>& frequencies_;
  std::vector<double> step_cosines_, step_sines_;
};

// Calls store(t, cosines, sines) for every t < length, where cosines[i] and
// sines[i] (i < pairs) are the cos and sin of (offset + t) * frequencies[i]
// in double. Threads split the anchor spans.
template <class Store>
void for_each_position(std::int64_t length, std::int64_t offset, const std::vector<double>& frequencies,
                       const Store& store) {
  if (length <= 0) return;
  const Angles angles(frequencies);
  const std::int64_t first_span = offset / kAnchorSpacing;
  const std::int64_t spans = (offset + length - 1) / kAnchorSpacing - first_span + 1;
  // A span is kAnchorSpacing rows of `pairs` steps of a few flops each.
  const std::int64_t grain = std::max<std::int64_t>(1, rows_per_grain(angles.pairs()) / kAnchorSpacing);
  parallel_for(spans, grain, [&](std::int64_t span_begin, std::int64_t span_end) {
    std::vector<double> cosines(frequencies.size()), sines(frequencies.size());
    for (std::int64_t span = span_begin; span < span_end; ++span) {
      const std::int64_t anchor = (first_span + span) * kAnchorSpacing;
      const std::int64_t stop = std::min(anchor + kAnchorSpacing, offset + length);
      for (std::int64_t position = anchor; position < stop; ++position) {
        if (position == anchor) angles.at_anchor(anchor, cosines.data(), sines.data());
        else angles.step(cosines.data(), sines.data());
        if (position >= offset) store(position - offset, cosines.data(), sines.data());
      }
    }
  });
}

// Calls store(k, cosines, sines) for each of the sorted, distinct positions
// [k], with the angles for_each_position gives that position.
template <class Store>
void for_listed_positions(const std::vector<std::int64_t>& positions, const std::vector<double>& frequencies,
                          const Store& store) {
  const Angles angles(frequencies);
  std::vector<double> cosines(frequencies.size()), sines(frequencies.size());
  std::int64_t current = -1;  // the position cosines and sines hold
  for (std::size_t k = 0; k < positions.size(); ++k) {
    const std::int64_t position = positions[k];
    const std::int64_t anchor = position / kAnchorSpacing * kAnchorSpacing;
    if (current < anchor) {
      angles.at_anchor(anchor, cosines.data(), sines.data());
      current = anchor;
    }
    for (; current < position; ++current) angles.step(cosines.data(), sines.data());
    store(static_cast<std::int64_t>(k), cosines.data(), sines.data());
  }
}

// The rotation of one [D] vector by the angles of one row of the table.
// Forward: (a, b) -> (a c - b s, a s + b c); the inverse passes -s.
inline void rotate_interleaved(float* y, const float* x, const float* cosines, const float* sines, std::int64_t pairs) {
  for (std::int64_t i = 0; i < pairs; ++i) {
    const float a = x[2 * i], b = x[2 * i + 1];
    y[2 * i] = a * cosines[i] - b * sines[i];
    y[2 * i + 1] = a * sines[i] + b * cosines[i];
  }
}

inline void rotate_halves(float* y, const float* x, const float* cosines, const float* sines, std::int64_t pairs) {
  for (std::int64_t i = 0; i < pairs; ++i) {
    const float a = x[i], b = x[i + pairs];
    y[i] = a * cosines[i] - b * sines[i];
    y[i + pairs] = a * sines[i] + b * cosines[i];
  }
}

}  // namespace

void sinusoidal_position_encoding(float* table, std::int64_t length, std::int64_t dim, std::int64_t offset) {
  const std::int64_t pairs = (dim + 1) / 2;
  for_each_position(length, offset, inverse_frequencies(10000.0, pairs, dim),
                    [&](std::int64_t t, const double* cosines, const double* sines) {
                      float* row = table + t * dim;
                      for (std::int64_t j = 0; j < dim; ++j)
                        row[j] = static_cast<float>(j % 2 == 0 ? sines[j / 2] : cosines[j / 2]);
                    });
}

void rope(float* y, const float* x, std::int64_t B, std::int64_t T, std::int64_t H, std::int64_t D,
          const std::int64_t* positions, std::int64_t offset, const double* frequencies, double base, bool interleaved,
          bool inverse) {
  const std::int64_t pairs = D / 2;
  const std::vector<double> row_frequencies = frequencies != nullptr
                                                  ? std::vector<double>(frequencies, frequencies + pairs)
                                                  : inverse_frequencies(base, pairs, D);
  // cos and sin of every position once, shared by the H vectors of each row
  // that sits there. table_row(b, t) is the row of (b, t)'s position.
  std::vector<std::int64_t> listed;
  if (positions != nullptr) {
    listed.assign(positions, positions + B * T);
    std::sort(listed.begin(), listed.end());
    listed.erase(std::unique(listed.begin(), listed.end()), listed.end());
  }
  const std::int64_t table_rows = positions != nullptr ? static_cast<std::int64_t>(listed.size()) : T;
  std::vector<float> cosines(static_cast<std::size_t>(table_rows * pairs));
  std::vector<float> sines(static_cast<std::size_t>(table_rows * pairs));
  const double sine_sign = inverse ? -1.0 : 1.0;
  const auto store = [&](std::int64_t row, const double* row_cosines, const double* row_sines) {
    for (std::int64_t i = 0; i < pairs; ++i) {
      cosines[row * pairs + i] = static_cast<float>(row_cosines[i]);
      sines[row * pairs + i] = static_cast<float>(sine_sign * row_sines[i]);
    }
  };
  if (positions != nullptr) for_listed_positions(listed, row_frequencies, store);
  else for_each_position(T, offset, row_frequencies, store);

  const std::int64_t row_size = H * D;
  parallel_for(B * T, rows_per_grain(row_size), [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t row = begin; row < end; ++row) {
      const std::int64_t table_row =
          positions != nullptr ? std::lower_bound(listed.begin(), listed.end(), positions[row]) - listed.begin()
                               : row % T;
      const float* row_cosines = cosines.data() + table_row * pairs;
      const float* row_sines = sines.data() + table_row * pairs;
      for (std::int64_t h = 0; h < H; ++h) {
        const std::int64_t start = row * row_size + h * D;
        if (interleaved) rotate_interleaved(y + start, x + start, row_cosines, row_sines, pairs);
        else rotate_halves(y + start, x + start, row_cosines, row_sines, pairs);
      }
    }
  });
}

}  // namespace attnkit::cpu
