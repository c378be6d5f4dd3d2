// How the baseline entry points of the elementwise and shape families split
// a strided walk over a contiguous output into work for threads. Baseline
// translation units only (it uses threading.h).
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstdint>

#include "core/threading.h"
#include "cpu/elementwise.h"

namespace attnkit::cpu {

// A unit of work for one thread holds about this many elements: below ~16K
// elements a parallel region costs more than it saves.
constexpr std::int64_t kUnitElements = 16384;

inline std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
  return (a + b - 1) / b;
}

// Splits the output of a layout (sizes, and each operand's strides; at least
// two dimensions) into tiles of whole rows of its last two dimensions, or
// column blocks of one row when a row alone is worth a thread, and calls
//   body(out_offset, offsets, rows, columns)
// for each, where offsets[k] is operand k's element offset of the tile's
// first element; a tile's rows lie `sizes.back()` apart in the output. Tiles
// are disjoint, so no result depends on how they are spread over threads.
template <typename Body>
void for_each_tile(const BroadcastLayout& layout, const Body& body) {
  if (layout.numel() == 0) return;
  const int dims = static_cast<int>(layout.sizes.size());
  const std::int64_t rows = layout.sizes[dims - 2];
  const std::int64_t columns = layout.sizes[dims - 1];
  const std::int64_t outer = layout.numel() / (rows * columns);
  const std::int64_t column_block = std::min(columns, kUnitElements);
  const std::int64_t column_blocks = ceil_div(columns, column_block);
  const std::int64_t rows_per_unit =
      column_blocks == 1 ? std::min(rows, std::max<std::int64_t>(1, kUnitElements / columns)) : 1;
  const std::int64_t row_units = ceil_div(rows, rows_per_unit);
  const std::int64_t units = outer * row_units * column_blocks;
  const std::int64_t grain = ceil_div(kUnitElements, rows_per_unit * column_block);
  parallel_for(units, grain, [&](std::int64_t u0, std::int64_t u1) {
    for (std::int64_t u = u0; u < u1; ++u) {
      const std::int64_t column_index = u % column_blocks;
      const std::int64_t row_index = (u / column_blocks) % row_units;
      std::int64_t o = u / column_blocks / row_units;
      const std::int64_t r0 = row_index * rows_per_unit;
      const std::int64_t c0 = column_index * column_block;
      std::int64_t offsets[kMaxBroadcastOperands] = {};
      for (int k = 0; k < layout.operands; ++k)
        offsets[k] = r0 * layout.strides[k][dims - 2] + c0 * layout.strides[k][dims - 1];
      const std::int64_t out_offset = (o * rows + r0) * columns + c0;
      for (int d = dims - 3; d >= 0 && o > 0; --d) {
        const std::int64_t index = o % layout.sizes[d];
        o /= layout.sizes[d];
        for (int k = 0; k < layout.operands; ++k) offsets[k] += index * layout.strides[k][d];
      }
      body(out_offset, offsets, std::min(rows_per_unit, rows - r0), std::min(column_block, columns - c0));
    }
  });
}

// Calls body(begin, end) on disjoint ranges covering [0, n), for flat loops.
template <typename Body>
void for_each_range(std::int64_t n, const Body& body) {
  const std::int64_t blocks = ceil_div(n, kUnitElements);
  parallel_for(blocks, 1,
               [&](std::int64_t b0, std::int64_t b1) { body(b0 * kUnitElements, std::min(n, b1 * kUnitElements)); });
}

// The size in bytes of the data cache of `level` (1 or 2) of one core, as the
// C library reports it (CPUID on x86, sysfs elsewhere), or `fallback` where it
// reports none. Kernels size their blocks from it instead of from constants
// tuned on one host.
inline std::int64_t data_cache_bytes(int level, std::int64_t fallback) {
#if defined(_SC_LEVEL1_DCACHE_SIZE) && defined(_SC_LEVEL2_CACHE_SIZE)
  const long size = sysconf(level == 1 ? _SC_LEVEL1_DCACHE_SIZE : _SC_LEVEL2_CACHE_SIZE);
  return size > 0 ? static_cast<std::int64_t>(size) : fallback;
#else
  return fallback;
#endif
}

}  // namespace attnkit::cpu
