// The attention driver (baseline ISA): the blocking, the masks' block
// classification, the operands of each block and the threads. The arithmetic
// runs in the active ISA's register-tiled leaf loops (attention_kernels.h):
// per pair of blocks (query_block queries x key_block keys), S^T = K Q^T,
// the online softmax across the block, and O += P V; backward recomputes P
// from the saved log-sum-exp in the same tiling.
#include "cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/allocator.h"
#include "core/threading.h"
#include "cpu/dispatch.h"
#include "cpu/random.h"
#include "cpu/tiling.h"

namespace attnkit::cpu {

namespace {

constexpr float kNegativeInfinity = -std::numeric_limits<float>::infinity();

// Score blocks are computed for whole vectors of queries: the columns of a
// block round up to a multiple of every ISA's width.
constexpr std::int64_t kColumnMultiple = 16;

std::int64_t round_up(std::int64_t a, std::int64_t b) {
  return ceil_div(a, b) * b;
}

// The key block: as many keys as keep one step of the forward in the L1 data
// cache next to the query block's Q^T (query_block x D): the block's scores
// (keys x query_block, written by S^T = K Q^T and read back by P V) and its
// rows of V (read once per register tile of the output). A multiple of 16
// keys, 16 to 256: on a 48 KiB L1 and D = 64 that is 80 keys, on 32 KiB 32.
std::int64_t key_block_size(std::int64_t query_block, std::int64_t d) {
  static const std::int64_t l1 = data_cache_bytes(1, 32 * 1024);
  const std::int64_t bytes_per_key = (query_block + d) * static_cast<std::int64_t>(sizeof(float));
  const std::int64_t free_bytes = l1 - query_block * d * static_cast<std::int64_t>(sizeof(float));
  return std::clamp<std::int64_t>(free_bytes / bytes_per_key / 16 * 16, 16, 256);
}

// How much of a block of queries x keys the mask lets through.
enum class BlockVisibility { hidden, partial, visible };

// A block as the kernels run it: its visibility and the keys [begin, end)
// to compute, the block's keys less those no query of the block sees.
struct BlockKeys {
  BlockVisibility visibility;
  std::int64_t begin, end;
};

// The mask of a problem: which keys each query sees. Two views of it:
//  - classify() sorts a block of queries x keys into hidden (skipped whole),
//    partial (masked in registers, BlockMask) or visible (no mask at all);
//  - fill_rows() gives the per-query key ranges a partial block is masked by.
// Every mask kind enters through these two: a new one (strided windows,
// global tokens, a block-sparse layout) adds its case to both.
//
// The masks of today: causal and the window give each query a contiguous
// range [lo, hi) of keys whose ends never decrease from one query to the next;
// key_lengths shortens every range of a batch; key_padding hides single keys.
class AttentionMask {
 public:
  explicit AttentionMask(const AttentionProblem& p) : p_(p) {
    if (p.key_lengths == nullptr && p.key_padding == nullptr) return;
    // One flag per key and batch (1 = padding), and the number of padded
    // keys before each key, to classify blocks in O(1).
    blocked_.assign(static_cast<std::size_t>(p.batch * p.key_length), 0.0f);
    padded_before_.assign(static_cast<std::size_t>(p.batch * (p.key_length + 1)), 0);
    for (std::int64_t b = 0; b < p.batch; ++b) {
      std::int64_t count = 0;
      for (std::int64_t j = 0; j < p.key_length; ++j) {
        const bool past_end = p.key_lengths != nullptr && j >= p.key_lengths[b];
        const bool padded = p.key_padding != nullptr && p.key_padding[b * p.key_length + j] != 0;
        blocked_[b * p.key_length + j] = (past_end || padded) ? 1.0f : 0.0f;
        padded_before_[b * (p.key_length + 1) + j] = count;
        count += (past_end || padded) ? 1 : 0;
      }
      padded_before_[b * (p.key_length + 1) + p.key_length] = count;
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

  // Queries [i0, i1) x keys [j0, j1) of batch b. The ranges' ends never
  // decrease with the query, so the first and last query bound the block:
  // hidden when every range ends before j0 or starts at j1 or later, or every
  // key is padding; visible when every range covers [j0, j1) and no key is
  // padding; partial otherwise (which is always safe), with the keys before
  // the first query's range and from the last query's end on left out (the
  // causal diagonal: a triangle, not the whole block).
  BlockKeys classify(std::int64_t b, std::int64_t i0, std::int64_t i1, std::int64_t j0, std::int64_t j1) const {
    std::int64_t first_lo, first_hi, last_lo, last_hi;
    range(b, i0, &first_lo, &first_hi);
    range(b, i1 - 1, &last_lo, &last_hi);
    const std::int64_t padded = padded_keys(b, j0, j1);
    if (last_hi <= j0 || first_lo >= j1 || padded == j1 - j0) return {BlockVisibility::hidden, j0, j0};
    if (last_lo <= j0 && first_hi >= j1 && padded == 0) return {BlockVisibility::visible, j0, j1};
    return {BlockVisibility::partial, std::max(j0, first_lo), std::min(j1, last_hi)};
  }

  // The key range of each query of [i0, i0 + rows) as floats, for BlockMask;
  // columns past rows (up to `columns`) see nothing.
  void fill_rows(std::int64_t b, std::int64_t i0, std::int64_t rows, std::int64_t columns, float* first,
                 float* end) const {
    for (std::int64_t i = 0; i < columns; ++i) {
      std::int64_t lo = 0, hi = 0;
      if (i < rows) range(b, i0 + i, &lo, &hi);
      first[i] = static_cast<float>(lo);
      end[i] = static_cast<float>(hi);
    }
  }

  // The padding flags of batch b's keys (1 = padded), or null without padding.
  const float* key_blocked(std::int64_t b) const {
    return blocked_.empty() ? nullptr : blocked_.data() + b * p_.key_length;
  }
  std::int64_t padded_keys(std::int64_t b, std::int64_t j0, std::int64_t j1) const {
    if (padded_before_.empty()) return 0;
    const std::int64_t* count = padded_before_.data() + b * (p_.key_length + 1);
    return count[j1] - count[j0];
  }

 private:
  const AttentionProblem& p_;
  std::vector<float> blocked_;
  std::vector<std::int64_t> padded_before_;
};

// The rows of one head, [rows x d] with row stride ld, copied contiguous
// (row stride d). The products read B row after row: rows ld apart (the
// fused QKV projection puts 3 H D floats between them) fall into a few sets
// of the L1 cache and evict each other; contiguous rows do not (measured:
// the P V product at 112 instead of 151 GFLOP/s). Rows that key_blocked
// flags (padded keys, or null) are zeroed, so that a NaN or inf in padding
// never meets a zero weight (0 * NaN is NaN).
void copy_rows(float* packed, const float* x, std::int64_t ld, std::int64_t rows, std::int64_t d,
               const float* key_blocked) {
  for (std::int64_t r = 0; r < rows; ++r) {
    if (key_blocked != nullptr && key_blocked[r] != 0.0f) std::fill(packed + r * d, packed + (r + 1) * d, 0.0f);
    else std::memcpy(packed + r * d, x + r * ld, d * sizeof(float));
  }
}

// Attention dropout on a block of `rows` queries (row0 first) x n keys (j0
// first) of head h in batch b; entry (i, j) is at block[i * query_stride + j *
// key_stride]. Zeroes the dropped entries and scales the kept ones.
void apply_dropout(const RandomKernels& random, const AttentionProblem& p, float* block, std::int64_t query_stride,
                   std::int64_t key_stride, std::int64_t rows, std::int64_t n, std::int64_t b, std::int64_t h,
                   std::int64_t row0, std::int64_t j0, std::uint32_t* bits) {
  for (std::int64_t i = 0; i < rows; ++i) {
    const std::int64_t first = ((b * p.heads + h) * p.query_length + row0 + i) * p.key_length + j0;
    random.random_bits(bits, first, n, p.dropout_seed, p.dropout_offset);
    for (std::int64_t j = 0; j < n; ++j) {
      float& x = block[i * query_stride + j * key_stride];
      x = bits[j] >= p.dropout_drop_below ? x * p.dropout_scale : 0.0f;
    }
  }
}

// The i-th of n query blocks in the order the forward's threads take them:
// alternately from the front and the back, so that the contiguous ranges of
// parallel_for get as many cheap (early) as costly (late) causal blocks.
std::int64_t interleaved_block(std::int64_t i, std::int64_t n) {
  return i % 2 == 0 ? i / 2 : n - 1 - i / 2;
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
  const AttentionMask mask(p);
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
      for (int r = 0; r < rows; ++r) mask.range(b, r % p.query_length, &lo[r], &hi[r]);
      float* partial = partials.data() + item * partial_size;
      ops.decode_partial(partial, partial + total_rows * d, partial + total_rows * (d + 1), scores.data(),
                         queries.data(), rows, static_cast<int>(p.kv_heads), k + b * p.key_length * p.k_stride,
                         v + b * p.key_length * p.v_stride, p.k_stride, p.v_stride, j0, j1, d, p.scale, lo.data(),
                         hi.data(), mask.key_blocked(b));
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
  const AttentionKernels& ops = *kernels.attention;
  const RandomKernels& random = *kernels.random;
  const std::int64_t d = p.head_dim;
  const std::int64_t ldo = p.heads * d;
  const std::int64_t group = p.heads / p.kv_heads;
  const std::int64_t bq = ops.query_block;
  const std::int64_t bk = key_block_size(bq, d);
  const AttentionMask mask(p);
  const std::int64_t query_blocks = ceil_div(p.query_length, bq);

  // K and V of every (batch, kv head), contiguous and with padding zeroed,
  // copied once and shared by the group's heads and every query block.
  const std::int64_t kv_size = p.key_length * d;
  ScratchBuffer packed_k(p.batch * p.kv_heads * kv_size), packed_v(p.batch * p.kv_heads * kv_size);
  parallel_for(p.batch * p.kv_heads, 1, [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t item = i0; item < i1; ++item) {
      const std::int64_t b = item / p.kv_heads, g = item % p.kv_heads;
      copy_rows(packed_k.data() + item * kv_size, k + b * p.key_length * p.k_stride + g * d, p.k_stride, p.key_length,
                d, mask.key_blocked(b));
      copy_rows(packed_v.data() + item * kv_size, v + b * p.key_length * p.v_stride + g * d, p.v_stride, p.key_length,
                d, mask.key_blocked(b));
    }
  });

  // One work item per (batch, head, query block): it runs the query block
  // against every key block the mask lets through and writes its rows of out.
  parallel_for(p.batch * p.heads * query_blocks, 1, [&](std::int64_t item0, std::int64_t item1) {
    ScratchBuffer qt(d * bq), scores(bk * bq), accumulator(bq * d);
    ScratchBuffer columns_state(6 * bq);  // per query: max, sum, correction, block max, first and end key
    float* running_max = columns_state.data();
    float* running_sum = running_max + bq;
    float* correction = running_sum + bq;
    float* column_max = correction + bq;
    float* first_key = column_max + bq;
    float* end_key = first_key + bq;
    std::vector<std::uint32_t> bits(static_cast<std::size_t>(bk));
    for (std::int64_t item = item0; item < item1; ++item) {
      const std::int64_t b = item / (p.heads * query_blocks);
      const std::int64_t h = item / query_blocks % p.heads;
      const std::int64_t row0 = interleaved_block(item % query_blocks, query_blocks) * bq;
      const std::int64_t rows = std::min(bq, p.query_length - row0);
      const std::int64_t columns = std::min(bq, round_up(rows, kColumnMultiple));
      const float* head_k = packed_k.data() + (b * p.kv_heads + h / group) * kv_size;
      const float* head_v = packed_v.data() + (b * p.kv_heads + h / group) * kv_size;
      ops.transpose_rows(qt.data(), bq, columns, q + (b * p.query_length + row0) * p.q_stride + h * d, p.q_stride, rows,
                         d);
      mask.fill_rows(b, row0, rows, columns, first_key, end_key);
      std::fill(running_max, running_max + columns, kNegativeInfinity);
      std::fill(running_sum, running_sum + columns, 0.0f);
      std::fill(accumulator.data(), accumulator.data() + rows * d, 0.0f);
      const float* blocked = mask.key_blocked(b);
      for (std::int64_t block = 0; block < p.key_length; block += bk) {
        const BlockKeys keys = mask.classify(b, row0, row0 + rows, block, std::min(block + bk, p.key_length));
        if (keys.visibility == BlockVisibility::hidden) continue;
        const std::int64_t j0 = keys.begin, n = keys.end - keys.begin;
        const BlockMask block_mask{first_key, end_key, blocked != nullptr ? blocked + j0 : nullptr, j0};
        std::fill(column_max, column_max + columns, kNegativeInfinity);
        ops.block_scores(scores.data(), bq, column_max, head_k + j0 * d, d, qt.data(), bq, n, columns, d, p.scale,
                         keys.visibility == BlockVisibility::partial ? &block_mask : nullptr);
        ops.softmax_block(scores.data(), bq, n, columns, column_max, running_max, running_sum, correction);
        // The normalizer counts every key; only the weights that reach V are dropped.
        if (p.dropout_drop_below != 0)
          apply_dropout(random, p, scores.data(), 1, bq, rows, n, b, h, row0, j0, bits.data());
        // O = O * correction + P V, P read key-major from the score block
        ops.block_product(accumulator.data(), d, scores.data(), 1, bq, head_v + j0 * d, d, rows, n, d, correction);
      }
      // A row with every key masked has sum 0: its output is 0, not NaN. (A
      // NaN sum, from a NaN among the visible keys, stays NaN.)
      ops.normalize_rows(out + (b * p.query_length + row0) * ldo + h * d, ldo, accumulator.data(), rows, d,
                         running_sum);
      // lse = max + log(sum) rounded once (in double): backward's P = e^(s -
      // lse) carries lse's rounding into every weight of the row
      for (std::int64_t i = 0; i < rows; ++i)
        lse[(b * p.heads + h) * p.query_length + row0 + i] =
            running_sum[i] != 0.0f ? static_cast<float>(running_max[i] + std::log(static_cast<double>(running_sum[i])))
                                   : kNegativeInfinity;
    }
  });
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, const AttentionProblem& p) {
  const KernelTables& kernels = active_kernels();
  const AttentionKernels& ops = *kernels.attention;
  const RandomKernels& random = *kernels.random;
  const std::int64_t d = p.head_dim;
  const std::int64_t ldo = p.heads * d;
  const std::int64_t group = p.heads / p.kv_heads;
  const std::int64_t bq = ops.query_block;
  const std::int64_t bk = key_block_size(bq, d);
  const AttentionMask mask(p);
  const std::int64_t query_blocks = ceil_div(p.query_length, bq);

  // One work item per (batch, kv head): it owns dK and dV of that head and dQ
  // of the query heads of its group, so no two threads write the same value
  // and every sum runs in one fixed order, whatever the thread count. Key
  // blocks outer: a block's K and V (and its rows of dK and dV) stay in cache
  // while the query blocks that see it pass. Every operand and sum is a
  // contiguous copy (copy_rows); the strided arrays are read and written once.
  parallel_for(p.batch * p.kv_heads, 1, [&](std::int64_t item0, std::int64_t item1) {
    const std::int64_t kv_size = p.key_length * d, q_size = p.query_length * d;
    ScratchBuffer head_k(kv_size), head_v(kv_size), dk_sum(kv_size), dv_sum(kv_size);
    // per query block of the current head: Q^T and dO^T [d x bq]; its rows of
    // Q and dO and the sum of dQ [Tq x d]; lse and delta; the key ranges
    ScratchBuffer qt(query_blocks * bq * d), dout_t(query_blocks * bq * d), out_t(bq * d);
    ScratchBuffer head_q(q_size), head_dout(q_size), dq_sum(q_size);
    ScratchBuffer row_state(4 * query_blocks * bq);
    float* block_lse = row_state.data();
    float* delta = block_lse + query_blocks * bq;
    float* first_key = delta + query_blocks * bq;
    float* end_key = first_key + query_blocks * bq;
    ScratchBuffer scores(bk * bq), dscores(bk * bq);
    std::vector<std::uint32_t> bits(static_cast<std::size_t>(bk));
    for (std::int64_t item = item0; item < item1; ++item) {
      const std::int64_t b = item / p.kv_heads;
      const std::int64_t g = item % p.kv_heads;
      const float* blocked = mask.key_blocked(b);
      copy_rows(head_k.data(), k + b * p.key_length * p.k_stride + g * d, p.k_stride, p.key_length, d, blocked);
      copy_rows(head_v.data(), v + b * p.key_length * p.v_stride + g * d, p.v_stride, p.key_length, d, blocked);
      std::fill(dk_sum.data(), dk_sum.data() + kv_size, 0.0f);
      std::fill(dv_sum.data(), dv_sum.data() + kv_size, 0.0f);
      for (std::int64_t t = 0; t < query_blocks; ++t) {
        const std::int64_t row0 = t * bq, rows = std::min(bq, p.query_length - row0);
        mask.fill_rows(b, row0, rows, bq, first_key + t * bq, end_key + t * bq);
      }

      for (std::int64_t h = g * group; h < (g + 1) * group; ++h) {
        const float* out_head = out + b * p.query_length * ldo + h * d;
        const float* head_lse = lse + (b * p.heads + h) * p.query_length;
        copy_rows(head_q.data(), q + b * p.query_length * p.q_stride + h * d, p.q_stride, p.query_length, d, nullptr);
        copy_rows(head_dout.data(), dout + b * p.query_length * ldo + h * d, ldo, p.query_length, d, nullptr);
        std::fill(dq_sum.data(), dq_sum.data() + q_size, 0.0f);
        for (std::int64_t t = 0; t < query_blocks; ++t) {
          const std::int64_t row0 = t * bq, rows = std::min(bq, p.query_length - row0);
          ops.transpose_rows(qt.data() + t * bq * d, bq, bq, head_q.data() + row0 * d, d, rows, d);
          ops.transpose_rows(dout_t.data() + t * bq * d, bq, bq, head_dout.data() + row0 * d, d, rows, d);
          // delta = rowsum(dO * O), summed as dP = dO V^T sums (column_dot)
          ops.transpose_rows(out_t.data(), bq, bq, out_head + row0 * ldo, ldo, rows, d);
          ops.column_dot(delta + t * bq, out_t.data(), dout_t.data() + t * bq * d, bq, bq, d);
          std::copy(head_lse + row0, head_lse + row0 + rows, block_lse + t * bq);
          // columns past the last query: no key seen, P = 0
          std::fill(block_lse + t * bq + rows, block_lse + (t + 1) * bq, kNegativeInfinity);
          std::fill(delta + t * bq + rows, delta + (t + 1) * bq, 0.0f);
        }
        for (std::int64_t block = 0; block < p.key_length; block += bk) {
          for (std::int64_t t = 0; t < query_blocks; ++t) {
            const std::int64_t row0 = t * bq, rows = std::min(bq, p.query_length - row0);
            const BlockKeys keys = mask.classify(b, row0, row0 + rows, block, std::min(block + bk, p.key_length));
            if (keys.visibility == BlockVisibility::hidden) continue;
            const std::int64_t j0 = keys.begin, n = keys.end - keys.begin;
            const float* block_k = head_k.data() + j0 * d;
            const float* block_v = head_v.data() + j0 * d;
            const std::int64_t columns = std::min(bq, round_up(rows, kColumnMultiple));
            const BlockMask block_mask{first_key + t * bq, end_key + t * bq,
                                       blocked != nullptr ? blocked + j0 : nullptr, j0};
            // S^T = scale K Q^T, as forward computed it (the same products in
            // the same order: the same scores, consistent with the saved lse),
            // and dP^T = V dO^T
            ops.block_scores(scores.data(), bq, nullptr, block_k, d, qt.data() + t * bq * d, bq, n, columns, d, p.scale,
                             keys.visibility == BlockVisibility::partial ? &block_mask : nullptr);
            ops.block_scores(dscores.data(), bq, nullptr, block_v, d, dout_t.data() + t * bq * d, bq, n, columns, d,
                             1.0f, nullptr);
            // With dropout, out = (P o M) V: the gradient reaching P is dP o M,
            // and dV takes P o M (M: the same mask, scaled, regenerated here).
            if (p.dropout_drop_below != 0)
              apply_dropout(random, p, dscores.data(), 1, bq, rows, n, b, h, row0, j0, bits.data());
            ops.softmax_gradient_block(scores.data(), dscores.data(), bq, n, columns, block_lse + t * bq,
                                       delta + t * bq);
            if (p.dropout_drop_below != 0)
              apply_dropout(random, p, scores.data(), 1, bq, rows, n, b, h, row0, j0, bits.data());
            // dV += P^T dO and dK += dS^T Q (scaled once, at the end): the
            // blocks read row by row; dQ += dS K: read key-major
            ops.block_product(dv_sum.data() + j0 * d, d, scores.data(), bq, 1, head_dout.data() + row0 * d, d, n, rows,
                              d, nullptr);
            ops.block_product(dk_sum.data() + j0 * d, d, dscores.data(), bq, 1, head_q.data() + row0 * d, d, n, rows, d,
                              nullptr);
            ops.block_product(dq_sum.data() + row0 * d, d, dscores.data(), 1, bq, block_k, d, rows, n, d, nullptr);
          }
        }
        // dQ = scale dS K: the scale once, on the sum
        float* dq_head = dq + b * p.query_length * p.q_stride + h * d;
        for (std::int64_t i = 0; i < p.query_length; ++i)
          for (std::int64_t x = 0; x < d; ++x) dq_head[i * p.q_stride + x] = dq_sum.data()[i * d + x] * p.scale;
      }
      float* dk_head = dk + b * p.key_length * p.k_stride + g * d;
      float* dv_head = dv + b * p.key_length * p.v_stride + g * d;
      for (std::int64_t j = 0; j < p.key_length; ++j)
        for (std::int64_t x = 0; x < d; ++x) {
          dk_head[j * p.k_stride + x] = dk_sum.data()[j * d + x] * p.scale;
          dv_head[j * p.v_stride + x] = dv_sum.data()[j * d + x];
        }
    }
  });
}

}  // namespace attnkit::cpu
