// The attention driver: packing, tiling and threading (baseline ISA). The
// products run on the GEMM's macro kernels with operands packed once and
// reused (K and V once per head; Q and dO once per head in backward), and the
// softmax steps between them on the active ISA's row operations.
#include "cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/allocator.h"
#include "core/threading.h"
#include "cpu/dispatch.h"
#include "cpu/gemm.h"
#include "cpu/random.h"

namespace attnkit::cpu {

namespace {

// Tile sizes. Backward works on S = Q K^T tiles of kQueryTile x kKeyTile:
// query tiles hold whole register-tile rows of every ISA (MR = 4, 6, 12, see
// isa/gemm.cpp) and key tiles whole register-tile columns (NR = 8, 16, 32).
// Forward works on the transposed tile S^T = K Q^T, so there the roles swap:
// kForwardKeyTile keys are the rows (a multiple of every MR) and
// kForwardQueryTile queries the columns (a multiple of every NR). With D = 64 the operands of one step (a
// query tile of Q, a key tile of K and V, P) take ~60 KiB and stay in L2 next
// to the output accumulator.
constexpr std::int64_t kQueryTile = 48;
constexpr std::int64_t kKeyTile = 64;
constexpr std::int64_t kForwardQueryTile = 64;
constexpr std::int64_t kForwardKeyTile = 48;

constexpr float kNegativeInfinity = -std::numeric_limits<float>::infinity();

std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
  return (a + b - 1) / b;
}
std::int64_t round_up(std::int64_t a, std::int64_t b) {
  return ceil_div(a, b) * b;
}

// Which keys each query row may see, and which keys are padding.
class Visibility {
 public:
  explicit Visibility(const AttentionProblem& p) : p_(p) {
    if (p.key_lengths == nullptr && p.key_padding == nullptr) return;
    // One flag per key and batch (1 = padding), for the row operations and
    // for zeroing padded keys in the packed K and V.
    blocked_.assign(static_cast<std::size_t>(p.batch * p.key_length), 0.0f);
    for (std::int64_t b = 0; b < p.batch; ++b)
      for (std::int64_t j = 0; j < p.key_length; ++j) {
        const bool past_end = p.key_lengths != nullptr && j >= p.key_lengths[b];
        const bool padded = p.key_padding != nullptr && p.key_padding[b * p.key_length + j] != 0;
        blocked_[b * p.key_length + j] = (past_end || padded) ? 1.0f : 0.0f;
      }
  }

  // [lo, hi): the keys query i of batch b may see before the padding flags.
  void range(std::int64_t b, std::int64_t i, std::int64_t* lo, std::int64_t* hi) const {
    const std::int64_t position = i + p_.key_length - p_.query_length;
    std::int64_t first = 0;
    std::int64_t end = p_.key_length;
    if (p_.causal) end = std::min(end, position + 1);
    if (p_.window > 0) {
      first = std::max<std::int64_t>(first, position - p_.window + 1);
      if (!p_.causal) end = std::min(end, position + p_.window);
    }
    if (p_.key_lengths != nullptr) end = std::min(end, p_.key_lengths[b]);
    *lo = std::max<std::int64_t>(first, 0);
    *hi = std::max(end, *lo);
  }

  // The ranges of rows [i0, i0 + rows) and the union [first, end) of them.
  void tile_ranges(std::int64_t b, std::int64_t i0, int rows, std::int64_t* lo, std::int64_t* hi, std::int64_t* first,
                   std::int64_t* end) const {
    *first = p_.key_length;
    *end = 0;
    for (int i = 0; i < rows; ++i) {
      range(b, i0 + i, &lo[i], &hi[i]);
      if (lo[i] < hi[i]) {
        *first = std::min(*first, lo[i]);
        *end = std::max(*end, hi[i]);
      }
    }
  }

  const float* blocked(std::int64_t b) const {
    return blocked_.empty() ? nullptr : blocked_.data() + b * p_.key_length;
  }

 private:
  const AttentionProblem& p_;
  std::vector<float> blocked_;
};

// K or V of one (batch, kv head), packed for the ways the products read it:
//  - "as columns": the B operand of X [rows x D] @ K^T, slivers of nr keys by D;
//  - "as A": the A operand of K @ X^T, slivers of mr keys by D;
//  - "as rows": per key tile, the B operand of P [rows x keys] @ V, slivers of
//    nr of the D columns by the tile's keys.
// Padded keys are zeroed, so that 0 * (NaN in a padded key) cannot occur.
struct PackedKeys {
  std::int64_t key_tile;
  std::int64_t columns_size;  // floats of the "as columns" packing
  std::int64_t a_size;        // floats of the "as A" packing
  std::int64_t rows_tile_stride;
  std::int64_t rows_size;

  PackedKeys(const AttentionProblem& p, int mr, int nr, std::int64_t key_tile)
      : key_tile(key_tile),
        columns_size(round_up(p.key_length, nr) * p.head_dim),
        a_size(round_up(p.key_length, mr) * p.head_dim),
        rows_tile_stride(key_tile * round_up(p.head_dim, nr)),
        rows_size(ceil_div(p.key_length, key_tile) * key_tile * round_up(p.head_dim, nr)) {}

  static void pack_columns(const GemmKernels& gemm, float* packed, const float* keys, std::int64_t ld,
                           const AttentionProblem& p, const float* blocked) {
    const std::int64_t d = p.head_dim;
    const int nr = gemm.shape.nr;
    gemm.pack_b(packed, keys, ld, true, p.key_length, d, nr);
    if (blocked == nullptr) return;
    for (std::int64_t j = 0; j < p.key_length; ++j)
      if (blocked[j] != 0.0f)
        for (std::int64_t x = 0; x < d; ++x) packed[(j / nr) * d * nr + x * nr + j % nr] = 0.0f;
  }

  static void pack_as_a(const GemmKernels& gemm, float* packed, const float* keys, std::int64_t ld,
                        const AttentionProblem& p, const float* blocked) {
    const std::int64_t d = p.head_dim;
    const int mr = gemm.shape.mr;
    gemm.pack_a(packed, keys, ld, false, p.key_length, d, mr);
    if (blocked == nullptr) return;
    for (std::int64_t j = 0; j < p.key_length; ++j)
      if (blocked[j] != 0.0f)
        for (std::int64_t x = 0; x < d; ++x) packed[(j / mr) * d * mr + x * mr + j % mr] = 0.0f;
  }

  void pack_rows(const GemmKernels& gemm, float* packed, const float* keys, std::int64_t ld, const AttentionProblem& p,
                 const float* blocked) const {
    const std::int64_t d = p.head_dim;
    const int nr = gemm.shape.nr;
    for (std::int64_t j0 = 0; j0 < p.key_length; j0 += key_tile) {
      const std::int64_t n = std::min(key_tile, p.key_length - j0);
      float* tile = packed + (j0 / key_tile) * rows_tile_stride;
      gemm.pack_b(tile, keys + j0 * ld, ld, false, d, n, nr);
      if (blocked == nullptr) continue;
      for (std::int64_t r = 0; r < n; ++r)
        if (blocked[j0 + r] != 0.0f)
          for (std::int64_t x = 0; x < d; ++x) tile[(x / nr) * n * nr + r * nr + x % nr] = 0.0f;
    }
  }
};

// Attention dropout on a tile of `rows` queries (row0 first) x n keys (j0
// first) of head h in batch b; entry (i, j) is at tile[i * query_stride + j *
// key_stride]. Zeroes the dropped entries and scales the kept ones.
void apply_dropout(const RandomKernels& random, const AttentionProblem& p, float* tile, std::int64_t query_stride,
                   std::int64_t key_stride, int rows, std::int64_t n, std::int64_t b, std::int64_t h, std::int64_t row0,
                   std::int64_t j0) {
  std::uint32_t bits[std::max(kKeyTile, kForwardKeyTile)];
  for (int i = 0; i < rows; ++i) {
    const std::int64_t first = ((b * p.heads + h) * p.query_length + row0 + i) * p.key_length + j0;
    random.random_bits(bits, first, n, p.dropout_seed, p.dropout_offset);
    for (std::int64_t j = 0; j < n; ++j) {
      float& x = tile[i * query_stride + j * key_stride];
      x = bits[j] >= p.dropout_drop_below ? x * p.dropout_scale : 0.0f;
    }
  }
}

GemmMacroTile product_tile(const float* packed_a, const float* packed_b, float* c, std::int64_t ldc, std::int64_t m,
                           std::int64_t n, std::int64_t kc, float alpha, bool accumulate) {
  GemmMacroTile t{};
  t.packed_a = packed_a;
  t.packed_b = packed_b;
  t.c = c;
  t.ldc = ldc;
  t.m = m;
  t.n = n;
  t.kc = kc;
  t.alpha = alpha;
  t.beta = 0.0f;
  t.first_k = !accumulate;  // accumulate: C += alpha * A B
  t.last_k = false;         // no epilogue
  t.activation = GemmActivation::none;
  return t;
}

// The decode path: a few query rows (Tq <= kDecodeQueries) per head read the
// cache once, with no packing. The rows of a kv head's group are done
// together so K and V are read once for all of them; when there are fewer
// (batch, kv head) pairs than threads, the keys are split too (split-KV) and
// the partial softmaxes merged.
constexpr std::int64_t kDecodeQueries = 4;
constexpr std::int64_t kDecodeMinimumKeysPerSplit = 256;

void attention_decode(float* out, float* lse, const float* q, const float* k, const float* v,
                      const AttentionProblem& p) {
  const AttentionKernels& ops = *active_kernels().attention;
  const std::int64_t d = p.head_dim;
  const std::int64_t ldo = p.heads * d;
  const std::int64_t group = p.heads / p.kv_heads;
  const int rows = static_cast<int>(group * p.query_length);   // per kv head, ordered (head, query)
  const int total_rows = static_cast<int>(p.kv_heads) * rows;  // per batch: row R = g * rows + r
  const Visibility visibility(p);
  // Work items: (batch, key range). With fewer batches than threads the keys
  // are split (split-KV) and the partial softmaxes merged below.
  const std::int64_t threads = get_num_threads();
  const std::int64_t splits =
      std::max<std::int64_t>(1, std::min(ceil_div(threads, p.batch), p.key_length / kDecodeMinimumKeysPerSplit));
  const std::int64_t keys_per_split = ceil_div(p.key_length, splits);
  // per (batch, split): acc [total_rows x d], max [total_rows], sum [total_rows]
  const std::int64_t partial_size = total_rows * (d + 2);
  ScratchBuffer partials(p.batch * splits * partial_size);

  parallel_for(p.batch * splits, 1, [&](std::int64_t i0, std::int64_t i1) {
    ScratchBuffer scores(total_rows * keys_per_split);
    ScratchBuffer queries(total_rows * d);
    std::vector<std::int64_t> lo(rows), hi(rows);
    for (std::int64_t item = i0; item < i1; ++item) {
      const std::int64_t b = item / splits, split = item % splits;
      const std::int64_t j0 = split * keys_per_split;
      const std::int64_t j1 = std::min(p.key_length, j0 + keys_per_split);
      // gather the query rows: row g * rows + r is head g * group + r / Tq, query r % Tq
      for (int row = 0; row < total_rows; ++row) {
        const int g = row / rows, r = row % rows;
        const std::int64_t h = g * group + r / p.query_length, i = r % p.query_length;
        std::memcpy(queries.data() + row * d, q + (b * p.query_length + i) * p.q_stride + h * d, d * sizeof(float));
      }
      for (int r = 0; r < rows; ++r) visibility.range(b, r % p.query_length, &lo[r], &hi[r]);
      float* partial = partials.data() + item * partial_size;
      ops.decode_partial(partial, partial + total_rows * d, partial + total_rows * (d + 1), scores.data(),
                         queries.data(), rows, static_cast<int>(p.kv_heads), k + b * p.key_length * p.k_stride,
                         v + b * p.key_length * p.v_stride, p.k_stride, p.v_stride, j0, j1, d, p.scale, lo.data(),
                         hi.data(), visibility.blocked(b));
    }
  });

  // Merge the splits of each row: rescale every partial to the common max.
  // A few d-length rows per batch: not worth a parallel region.
  for (std::int64_t b = 0; b < p.batch; ++b) {
    for (int row = 0; row < total_rows; ++row) {
      const int g = row / rows, r = row % rows;
      const std::int64_t h = g * group + r / p.query_length, i = r % p.query_length;
      auto partial = [&](std::int64_t split) { return partials.data() + (b * splits + split) * partial_size; };
      float row_max = kNegativeInfinity;
      for (std::int64_t split = 0; split < splits; ++split)
        row_max = std::max(row_max, partial(split)[total_rows * d + row]);
      float* o = out + (b * p.query_length + i) * ldo + h * d;
      std::fill(o, o + d, 0.0f);
      float total = 0.0f;
      if (row_max != kNegativeInfinity) {
        for (std::int64_t split = 0; split < splits; ++split) {
          const float* part = partial(split);
          const float sum = part[total_rows * (d + 1) + row];
          if (sum == 0.0f) continue;
          const float weight = std::exp(part[total_rows * d + row] - row_max);
          total += sum * weight;
          for (std::int64_t x = 0; x < d; ++x) o[x] += part[row * d + x] * weight;
        }
      }
      // divide (one rounding), not multiply by a rounded reciprocal (two);
      // only a sum of exactly 0 means every key was masked (NaN stays NaN)
      for (std::int64_t x = 0; x < d; ++x) o[x] = total != 0.0f ? o[x] / total : 0.0f;
      lse[(b * p.heads + h) * p.query_length + i] = total != 0.0f ? row_max + std::log(total) : kNegativeInfinity;
    }
  }
}

}  // namespace

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       const AttentionProblem& p) {
  if (!p.for_backward && p.dropout_drop_below == 0 && p.query_length <= kDecodeQueries &&
      p.heads / p.kv_heads * p.query_length <= 16) {
    attention_decode(out, lse, q, k, v, p);
    return;
  }
  const KernelTables& kernels = active_kernels();
  const GemmKernels& gemm = *kernels.gemm;
  const AttentionKernels& ops = *kernels.attention;
  const RandomKernels& random = *kernels.random;
  const int mr = gemm.shape.mr;
  const int nr = gemm.shape.nr;
  const std::int64_t d = p.head_dim;
  const std::int64_t ldo = p.heads * d;
  const std::int64_t group = p.heads / p.kv_heads;
  const Visibility visibility(p);
  const PackedKeys layout(p, mr, nr, kForwardKeyTile);
  static_assert(kForwardKeyTile % 12 == 0 && kForwardQueryTile % 32 == 0,
                "forward tiles must hold whole register tiles of every ISA");

  // K (as the A operand of S^T = K Q^T) and V of every (batch, kv head),
  // packed once and shared by the query heads of the group and every query tile.
  const std::int64_t kv_items = p.batch * p.kv_heads;
  ScratchBuffer packed_k(kv_items * layout.a_size);
  ScratchBuffer packed_v(kv_items * layout.rows_size);
  parallel_for(kv_items, 1, [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t item = i0; item < i1; ++item) {
      const std::int64_t b = item / p.kv_heads;
      const std::int64_t g = item % p.kv_heads;
      PackedKeys::pack_as_a(gemm, packed_k.data() + item * layout.a_size, k + b * p.key_length * p.k_stride + g * d,
                            p.k_stride, p, visibility.blocked(b));
      layout.pack_rows(gemm, packed_v.data() + item * layout.rows_size, v + b * p.key_length * p.v_stride + g * d,
                       p.v_stride, p, visibility.blocked(b));
    }
  });

  const std::int64_t query_tiles = ceil_div(p.query_length, kForwardQueryTile);
  parallel_for(p.batch * p.heads * query_tiles, 1, [&](std::int64_t i0, std::int64_t i1) {
    ScratchBuffer packed_q(round_up(kForwardQueryTile, nr) * d);
    ScratchBuffer scores(kForwardKeyTile * kForwardQueryTile);  // S^T: keys x queries
    ScratchBuffer packed_p(round_up(kForwardQueryTile, mr) * kForwardKeyTile);
    ScratchBuffer accumulator(kForwardQueryTile * d);
    alignas(64) float running_max[kForwardQueryTile], running_sum[kForwardQueryTile];
    alignas(64) float first_key[kForwardQueryTile], end_key[kForwardQueryTile];
    std::int64_t lo[kForwardQueryTile], hi[kForwardQueryTile];
    for (std::int64_t item = i0; item < i1; ++item) {
      const std::int64_t b = item / (p.heads * query_tiles);
      const std::int64_t h = item / query_tiles % p.heads;
      const std::int64_t row0 = item % query_tiles * kForwardQueryTile;
      const int rows = static_cast<int>(std::min(kForwardQueryTile, p.query_length - row0));
      const std::int64_t kv_item = b * p.kv_heads + h / group;
      std::int64_t first, end;
      visibility.tile_ranges(b, row0, rows, lo, hi, &first, &end);
      for (int i = 0; i < rows; ++i) {
        first_key[i] = static_cast<float>(lo[i]);
        end_key[i] = static_cast<float>(hi[i]);
      }

      // Q tile as the B operand of S^T = K Q^T: slivers of nr queries by D
      gemm.pack_b(packed_q.data(), q + (b * p.query_length + row0) * p.q_stride + h * d, p.q_stride, true, rows, d, nr);
      std::fill(running_max, running_max + rows, kNegativeInfinity);
      std::fill(running_sum, running_sum + rows, 0.0f);
      std::fill(accumulator.data(), accumulator.data() + rows * d, 0.0f);
      // Only key tiles that some row sees: causal attention skips the rest.
      for (std::int64_t j0 = first / kForwardKeyTile * kForwardKeyTile; j0 < end; j0 += kForwardKeyTile) {
        const std::int64_t n = std::min(kForwardKeyTile, p.key_length - j0);
        const float* blocked = visibility.blocked(b);
        gemm.macro_kernel(product_tile(packed_k.data() + kv_item * layout.a_size + (j0 / mr) * d * mr, packed_q.data(),
                                       scores.data(), kForwardQueryTile, n, rows, d, p.scale, false));
        ops.online_softmax_columns(scores.data(), kForwardQueryTile, n, rows, j0, first_key, end_key,
                                   blocked ? blocked + j0 : nullptr, running_max, running_sum, accumulator.data(), d,
                                   d);
        // The normalizer counts every key; only the weights that reach V are dropped.
        if (p.dropout_drop_below != 0)
          apply_dropout(random, p, scores.data(), 1, kForwardQueryTile, rows, n, b, h, row0, j0);
        // P = (S^T)^T as the A operand: contiguous runs of mr queries per key
        gemm.pack_a(packed_p.data(), scores.data(), kForwardQueryTile, true, rows, n, mr);
        gemm.macro_kernel(product_tile(
            packed_p.data(),
            packed_v.data() + kv_item * layout.rows_size + (j0 / kForwardKeyTile) * layout.rows_tile_stride,
            accumulator.data(), d, rows, d, n, 1.0f, true));
      }
      for (int i = 0; i < rows; ++i) {
        float* o = out + (b * p.query_length + row0 + i) * ldo + h * d;
        const float sum = running_sum[i];
        // A row with every key masked has sum 0: its output is 0, not NaN. (A
        // NaN sum, from a NaN among the visible keys, stays NaN.)
        for (std::int64_t x = 0; x < d; ++x) o[x] = sum != 0.0f ? accumulator.data()[i * d + x] / sum : 0.0f;
        lse[(b * p.heads + h) * p.query_length + row0 + i] =
            sum != 0.0f ? running_max[i] + std::log(sum) : kNegativeInfinity;
      }
    }
  });
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, const AttentionProblem& p) {
  const KernelTables& kernels = active_kernels();
  const GemmKernels& gemm = *kernels.gemm;
  const AttentionKernels& ops = *kernels.attention;
  const RandomKernels& random = *kernels.random;
  const int mr = gemm.shape.mr;
  const int nr = gemm.shape.nr;
  const std::int64_t d = p.head_dim;
  const std::int64_t ldo = p.heads * d;
  const std::int64_t group = p.heads / p.kv_heads;
  const Visibility visibility(p);
  const PackedKeys layout(p, mr, nr, kKeyTile);
  static_assert(kQueryTile % 12 == 0 && kKeyTile % 32 == 0,
                "backward tiles must hold whole register tiles of every ISA");
  const std::int64_t query_tiles = ceil_div(p.query_length, kQueryTile);
  // Query tiles packed as A (kc = D) and as B (kc = the tile's rows).
  const std::int64_t a_tile_stride = round_up(kQueryTile, mr) * d;
  const std::int64_t b_tile_stride = kQueryTile * round_up(d, nr);

  // One thread per (batch, kv head): it owns dK and dV of that head and dQ of
  // the query heads of its group, so nothing is shared and the sums run in a
  // fixed order for any thread count.
  parallel_for(p.batch * p.kv_heads, 1, [&](std::int64_t item0, std::int64_t item1) {
    ScratchBuffer k_columns(layout.columns_size), k_rows(layout.rows_size), v_columns(layout.columns_size);
    ScratchBuffer q_as_a(query_tiles * a_tile_stride), q_as_b(query_tiles * b_tile_stride);
    ScratchBuffer dout_as_a(query_tiles * a_tile_stride), dout_as_b(query_tiles * b_tile_stride);
    ScratchBuffer delta(p.query_length);
    ScratchBuffer scores(kQueryTile * kKeyTile), dscores(kQueryTile * kKeyTile);
    ScratchBuffer packed(round_up(std::max(kQueryTile, kKeyTile), mr) * std::max(kQueryTile, kKeyTile));
    ScratchBuffer dk_tile(kKeyTile * d), dv_tile(kKeyTile * d);
    std::vector<std::int64_t> lo(query_tiles * kQueryTile), hi(query_tiles * kQueryTile);
    std::vector<std::int64_t> tile_first(query_tiles), tile_end(query_tiles);

    for (std::int64_t item = item0; item < item1; ++item) {
      const std::int64_t b = item / p.kv_heads;
      const std::int64_t g = item % p.kv_heads;
      const float* blocked = visibility.blocked(b);
      const std::int64_t k_offset = b * p.key_length * p.k_stride + g * d;
      const std::int64_t v_offset = b * p.key_length * p.v_stride + g * d;
      PackedKeys::pack_columns(gemm, k_columns.data(), k + k_offset, p.k_stride, p, blocked);
      PackedKeys::pack_columns(gemm, v_columns.data(), v + v_offset, p.v_stride, p, blocked);
      layout.pack_rows(gemm, k_rows.data(), k + k_offset, p.k_stride, p, blocked);
      for (std::int64_t t = 0; t < query_tiles; ++t) {
        const std::int64_t row0 = t * kQueryTile;
        const int rows = static_cast<int>(std::min(kQueryTile, p.query_length - row0));
        visibility.tile_ranges(b, row0, rows, &lo[row0], &hi[row0], &tile_first[t], &tile_end[t]);
      }

      for (std::int64_t h = g * group; h < (g + 1) * group; ++h) {
        // this query head's Q and dO, packed once for all key tiles
        const std::int64_t q_offset = b * p.query_length * p.q_stride + h * d;
        const std::int64_t out_offset = b * p.query_length * ldo + h * d;
        for (std::int64_t t = 0; t < query_tiles; ++t) {
          const std::int64_t row0 = t * kQueryTile;
          const std::int64_t rows = std::min(kQueryTile, p.query_length - row0);
          const float* q_tile = q + q_offset + row0 * p.q_stride;
          const float* dout_tile = dout + out_offset + row0 * ldo;
          gemm.pack_a(q_as_a.data() + t * a_tile_stride, q_tile, p.q_stride, false, rows, d, mr);
          gemm.pack_b(q_as_b.data() + t * b_tile_stride, q_tile, p.q_stride, false, d, rows, nr);
          gemm.pack_a(dout_as_a.data() + t * a_tile_stride, dout_tile, ldo, false, rows, d, mr);
          gemm.pack_b(dout_as_b.data() + t * b_tile_stride, dout_tile, ldo, false, d, rows, nr);
        }
        ops.row_dot(delta.data(), dout + out_offset, ldo, out + out_offset, ldo, p.query_length, d);
        const float* head_lse = lse + (b * p.heads + h) * p.query_length;

        for (std::int64_t j0 = 0; j0 < p.key_length; j0 += kKeyTile) {
          const std::int64_t n = std::min(kKeyTile, p.key_length - j0);
          // dK and dV of this key tile sum over the group's heads: start at 0
          // with the first head, read back from dk/dv for the others.
          if (h == g * group) {
            std::fill(dk_tile.data(), dk_tile.data() + n * d, 0.0f);
            std::fill(dv_tile.data(), dv_tile.data() + n * d, 0.0f);
          } else {
            for (std::int64_t r = 0; r < n; ++r) {
              std::memcpy(dk_tile.data() + r * d, dk + k_offset + (j0 + r) * p.k_stride, d * sizeof(float));
              std::memcpy(dv_tile.data() + r * d, dv + v_offset + (j0 + r) * p.v_stride, d * sizeof(float));
            }
          }
          for (std::int64_t t = 0; t < query_tiles; ++t) {
            if (tile_first[t] >= j0 + n || tile_end[t] <= j0) continue;  // nothing visible here
            const std::int64_t row0 = t * kQueryTile;
            const int rows = static_cast<int>(std::min(kQueryTile, p.query_length - row0));
            const float* k_sliver = k_columns.data() + (j0 / nr) * d * nr;
            const float* v_sliver = v_columns.data() + (j0 / nr) * d * nr;
            // S = scale Q K^T and dP = dO V^T for this pair of tiles
            gemm.macro_kernel(product_tile(q_as_a.data() + t * a_tile_stride, k_sliver, scores.data(), kKeyTile, rows,
                                           n, d, p.scale, false));
            gemm.macro_kernel(product_tile(dout_as_a.data() + t * a_tile_stride, v_sliver, dscores.data(), kKeyTile,
                                           rows, n, d, 1.0f, false));
            // With dropout, out = (P o M) V: the gradient reaching P is dP o M,
            // and dV takes P o M (M: the same mask, scaled, regenerated here).
            if (p.dropout_drop_below != 0)
              apply_dropout(random, p, dscores.data(), kKeyTile, 1, rows, n, b, h, row0, j0);
            ops.softmax_backward_tile(scores.data(), dscores.data(), kKeyTile, rows, n, j0, &lo[row0], &hi[row0],
                                      blocked ? blocked + j0 : nullptr, head_lse + row0, delta.data() + row0);
            if (p.dropout_drop_below != 0)
              apply_dropout(random, p, scores.data(), kKeyTile, 1, rows, n, b, h, row0, j0);
            // dV += P^T dO
            gemm.pack_a(packed.data(), scores.data(), kKeyTile, true, n, rows, mr);
            gemm.macro_kernel(product_tile(packed.data(), dout_as_b.data() + t * b_tile_stride, dv_tile.data(), d, n, d,
                                           rows, 1.0f, true));
            // dK += scale dS^T Q
            gemm.pack_a(packed.data(), dscores.data(), kKeyTile, true, n, rows, mr);
            gemm.macro_kernel(product_tile(packed.data(), q_as_b.data() + t * b_tile_stride, dk_tile.data(), d, n, d,
                                           rows, p.scale, true));
            // dQ += scale dS K
            gemm.pack_a(packed.data(), dscores.data(), kKeyTile, false, rows, n, mr);
            gemm.macro_kernel(product_tile(packed.data(), k_rows.data() + (j0 / kKeyTile) * layout.rows_tile_stride,
                                           dq + q_offset + row0 * p.q_stride, p.q_stride, rows, d, n, p.scale, true));
          }
          for (std::int64_t r = 0; r < n; ++r) {
            std::memcpy(dk + k_offset + (j0 + r) * p.k_stride, dk_tile.data() + r * d, d * sizeof(float));
            std::memcpy(dv + v_offset + (j0 + r) * p.v_stride, dv_tile.data() + r * d, d * sizeof(float));
          }
        }
      }
    }
  });
}

}  // namespace attnkit::cpu
