// Philox 4x32-10 and what is built on it (raw bits, uniform floats, dropout),
// written once over Vec/VecU32 and compiled per ISA (isa/random.cpp). Include
// a vec_<isa>.h first.
//
// Philox 4x32-10 is the counter-based generator of Salmon, Moraes, Dror and
// Shaw, "Parallel random numbers: as easy as 1, 2, 3" (SC'11): a 128-bit
// counter (c0, c1, c2, c3) and a 64-bit key (k0, k1) go through 10 rounds of
//
//   (hi0, lo0) = M0 * c0,  (hi1, lo1) = M1 * c2        (32x32 -> 64-bit products)
//   c = (hi1 ^ c1 ^ k0,  lo1,  hi0 ^ c3 ^ k1,  lo0)
//   k = (k0 + W0, k1 + W1)                              (between rounds)
//
// and come out as four 32-bit numbers. Every output is a pure function of
// (counter, key), so any thread can produce any part of a stream.
//
// attnkit's stream (seed, offset): the key is the 64-bit seed; the counter is
// (low word of b, high word of b, low word of offset, high word of offset) for
// block b = 0, 1, 2, ... Elements come in groups of 64 made from 16 blocks, a
// word at a time: element i takes word (i / 16) % 4 of block 16 (i / 64) + i % 16.
// So the numbers depend only on (seed, offset, i) - not on threads, ISA or
// device - and a vector of up to 16 lanes computes 16 blocks side by side and
// stores each word with one instruction, no transposes.
#pragma once

#include <cstdint>

namespace attnkit::cpu::random_kernels {

constexpr std::uint32_t kMultiplier0 = 0xD2511F53u;
constexpr std::uint32_t kMultiplier1 = 0xCD9E8D57u;
constexpr std::uint32_t kWeyl0 = 0x9E3779B9u;  // the golden ratio: 2^32 (sqrt(5) - 1) / 2
constexpr std::uint32_t kWeyl1 = 0xBB67AE85u;  // 2^32 (sqrt(3) - 1)
constexpr int kRounds = 10;

constexpr int kBlocksPerGroup = 16;
constexpr std::int64_t kGroupSize = 4 * kBlocksPerGroup;  // elements per group

// The 10 rounds on U::width blocks at once (one per lane), in place.
template <class U>
inline void philox_rounds(U& c0, U& c1, U& c2, U& c3, std::uint32_t key0, std::uint32_t key1) {
  const U multiplier0 = U::broadcast(kMultiplier0);
  const U multiplier1 = U::broadcast(kMultiplier1);
  for (int round = 0; round < kRounds; ++round) {
    U high0, low0, high1, low1;
    multiply_wide(c0, multiplier0, high0, low0);
    multiply_wide(c2, multiplier1, high1, low1);
    c0 = high1 ^ c1 ^ U::broadcast(key0);
    c1 = low1;
    c2 = high0 ^ c3 ^ U::broadcast(key1);
    c3 = low0;
    key0 += kWeyl0;
    key1 += kWeyl1;
  }
}

// numbers[0..63] = elements 64 g .. 64 g + 63 of the stream (seed, offset).
template <class U>
inline void philox_group(std::uint32_t* numbers, std::uint64_t group, std::uint64_t seed, std::uint64_t offset) {
  static_assert(kBlocksPerGroup % U::width == 0, "a group is a whole number of vectors");
  for (int lane0 = 0; lane0 < kBlocksPerGroup; lane0 += U::width) {
    // Blocks 16 g + lane0 + lane: the low word of 16 g is a multiple of 16, so
    // adding the lane (< 16) never carries into the high word.
    const std::uint64_t first_block = group * kBlocksPerGroup + std::uint64_t(lane0);
    U c0 = U::broadcast(std::uint32_t(first_block)) + U::lane_index();
    U c1 = U::broadcast(std::uint32_t(first_block >> 32));
    U c2 = U::broadcast(std::uint32_t(offset));
    U c3 = U::broadcast(std::uint32_t(offset >> 32));
    philox_rounds(c0, c1, c2, c3, std::uint32_t(seed), std::uint32_t(seed >> 32));
    c0.store(numbers + 0 * kBlocksPerGroup + lane0);
    c1.store(numbers + 1 * kBlocksPerGroup + lane0);
    c2.store(numbers + 2 * kBlocksPerGroup + lane0);
    c3.store(numbers + 3 * kBlocksPerGroup + lane0);
  }
}

// One Philox 4x32-10 block for an arbitrary counter and key (the known-answer
// tests), through the same rounds as the streams.
template <class U>
inline void philox_block(std::uint32_t out[4], const std::uint32_t counter[4], const std::uint32_t key[2]) {
  U c0 = U::broadcast(counter[0]), c1 = U::broadcast(counter[1]);
  U c2 = U::broadcast(counter[2]), c3 = U::broadcast(counter[3]);
  philox_rounds(c0, c1, c2, c3, key[0], key[1]);
  std::uint32_t lanes[4][U::width];
  c0.store(lanes[0]);
  c1.store(lanes[1]);
  c2.store(lanes[2]);
  c3.store(lanes[3]);
  for (int word = 0; word < 4; ++word) out[word] = lanes[word][0];
}

// Calls apply(numbers, begin, end) for consecutive pieces [begin, end) of
// [first, first + count), each within one group; numbers[k] is element
// group_begin + k, where group_begin = begin - begin % 64.
template <class U, class Apply>
inline void for_each_group(std::int64_t first, std::int64_t count, std::uint64_t seed, std::uint64_t offset,
                           const Apply& apply) {
  // 16 entries of slack: a full vector load at a piece's last, partial
  // vector may read up to 15 entries past the group.
  alignas(64) std::uint32_t numbers[kGroupSize + 16] = {};
  const std::int64_t end = first + count;
  for (std::int64_t group_begin = first - first % kGroupSize; group_begin < end; group_begin += kGroupSize) {
    philox_group<U>(numbers, std::uint64_t(group_begin / kGroupSize), seed, offset);
    const std::int64_t begin = group_begin > first ? group_begin : first;
    const std::int64_t stop = group_begin + kGroupSize < end ? group_begin + kGroupSize : end;
    apply(numbers, begin, stop);
  }
}

// bits[i - first] = number i of the stream, for i in [first, first + count).
template <class U>
inline void random_bits(std::uint32_t* bits, std::int64_t first, std::int64_t count, std::uint64_t seed,
                        std::uint64_t offset) {
  for_each_group<U>(first, count, seed, offset,
                    [&](const std::uint32_t* numbers, std::int64_t begin, std::int64_t end) {
                      for (std::int64_t i = begin; i < end; ++i) bits[i - first] = numbers[i % kGroupSize];
                    });
}

// Calls op(numbers of elements i .. i + lanes - 1, i, lanes) for i = begin,
// begin + V::width, ... < end, within one group; lanes < V::width only for
// the last vector of a piece.
template <class V, class U, class Op>
inline void for_each_vector(const std::uint32_t* numbers, std::int64_t begin, std::int64_t end, const Op& op) {
  static_assert(V::width == U::width, "Vec and VecU32 have one lane per element");
  for (std::int64_t i = begin; i < end; i += V::width) {
    // A full load past `end` stays inside numbers (see for_each_group).
    const int lanes = end - i < V::width ? int(end - i) : V::width;
    op(U::load(numbers + i % kGroupSize), i, lanes);
  }
}

// values[i - first] = (number i >> 8) * 2^-24: its 24 high bits as a float in
// [0, 1), each of the 2^24 values equally likely.
template <class V, class U>
inline void uniform(float* values, std::int64_t first, std::int64_t count, std::uint64_t seed, std::uint64_t offset) {
  const V unit = V::broadcast(0x1p-24f);
  for_each_group<U>(first, count, seed, offset,
                    [&](const std::uint32_t* numbers, std::int64_t begin, std::int64_t end) {
                      for_each_vector<V, U>(numbers, begin, end, [&](U bits, std::int64_t i, int lanes) {
                        (to_float(shift_right(bits, 8)) * unit).store_partial(values + (i - first), lanes);
                      });
                    });
}

// Dropout of elements [first, first + count), x and y pointing at element
// `first`: y = x * scale where number i >= drop_below (kept), else exactly 0.
template <class V, class U>
inline void dropout(float* y, const float* x, std::int64_t first, std::int64_t count, std::uint32_t drop_below,
                    float scale, std::uint64_t seed, std::uint64_t offset) {
  const U threshold = U::broadcast(drop_below);
  const V scale_vector = V::broadcast(scale);
  const V zero = V::broadcast(0.0f);
  for_each_group<U>(first, count, seed, offset,
                    [&](const std::uint32_t* numbers, std::int64_t begin, std::int64_t end) {
                      for_each_vector<V, U>(numbers, begin, end, [&](U bits, std::int64_t i, int lanes) {
                        const std::int64_t k = i - first;
                        const V kept = V::load_partial(x + k, lanes) * scale_vector;
                        select(greater_equal(bits, threshold), kept, zero).store_partial(y + k, lanes);
                      });
                    });
}

}  // namespace attnkit::cpu::random_kernels
