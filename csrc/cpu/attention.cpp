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
#include <iterator>
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

// The query block: the ISA's (a multiple of its tiles), or under a block
// mask whose rows are longer (up to 4 ISA blocks), one layout row rounded up
// to whole vectors: a query block is then one row of the layout, instead of
// a full block plus a short remainder that computes the same keys again
// (the blocks are cut at the layout's rows, AttentionMask::query_blocks).
std::int64_t query_block_size(std::int64_t isa_block, const AttentionProblem& p) {
  if (p.block_mask == nullptr || p.block_size <= isa_block || p.block_size > 4 * isa_block) return isa_block;
  return round_up(p.block_size, kColumnMultiple);
}

// How much of a block of queries x keys the mask lets through.
enum class BlockVisibility { hidden, partial, visible };

// A block as the kernels run it: its visibility and the keys [begin, end)
// to compute, the block's keys less those no query of the block sees.
struct BlockKeys {
  BlockVisibility visibility;
  std::int64_t begin, end;
};

// The queries of a block: rows consecutive ones from row0, or (list non-null)
// the gathered global queries list[0 .. rows).
struct Queries {
  std::int64_t row0, rows;
  const std::int64_t* list;
  std::int64_t operator[](std::int64_t c) const { return list != nullptr ? list[c] : row0 + c; }
};

// The mask of a problem: which keys each query sees (AttentionProblem).
// Every mask kind enters through this class:
//  - classify() sorts a block of queries x keys into hidden (skipped whole),
//    partial (masked in registers, BlockMask) or visible (no mask at all);
//  - fill_block() gives the per-query key ranges (and residues, under a
//    dilation) a partial block is masked by;
//  - block_end() cuts the keys into blocks that lie in one column of the
//    block mask, so that a block's layout is one flag per query row.
// Global tokens as keys are taken out of the blocks (key_blocked flags them
// like padding) and run as a short block of their own, gathered (the
// global pass: fill_global_rows, global_blocked); as queries they leave the
// consecutive query blocks too (masked out there) and run in blocks of
// their own (global_query_rows), each seeing a prefix of the keys.
//
// Without global queries, causal and the window give each query a
// contiguous range [lo, hi) of keys whose ends never decrease from one query
// to the next; key_lengths shortens every range of a batch; key_padding
// hides single keys.
class AttentionMask {
 public:
  // by_residue: the blocks may run the dilation's residue classes apart
  // (see by_residue()); the decode path visits keys one by one and does not.
  AttentionMask(const AttentionProblem& p, bool by_residue)
      : p_(p),
        dilation_(std::max<std::int64_t>(1, p.dilation)),
        by_residue_(by_residue && dilation_ > 1 && p.global_count == 0 && p.block_mask == nullptr &&
                    p.dropout_drop_below == 0 && p.query_length <= p.key_length) {
    if (by_residue_) order_by_residue();
    if (p.global_count > 0) {
      global_before_.assign(static_cast<std::size_t>(p.key_length + 1), 0);
      for (std::int64_t g = 0; g < p.global_count; ++g) global_before_[p.global_tokens[g] + 1] = 1;
      for (std::int64_t j = 0; j < p.key_length; ++j) global_before_[j + 1] += global_before_[j];
      for (std::int64_t g = 0; g < p.global_count; ++g) {
        const std::int64_t i = p.global_tokens[g] - (p.key_length - p.query_length);
        if (i >= 0 && i < p.query_length) global_query_rows_.push_back(i);
      }
    }
    if (p.key_lengths == nullptr && p.key_padding == nullptr && p.global_count == 0) return;
    // One flag per key and batch (1 = out of the blocks: padding, or a
    // global token), the number of such keys before each key, to classify
    // blocks in O(1), and the padding flags of the gathered global tokens.
    blocked_.assign(static_cast<std::size_t>(p.batch * p.key_length), 0.0f);
    padded_before_.assign(static_cast<std::size_t>(p.batch * (p.key_length + 1)), 0);
    global_blocked_.assign(static_cast<std::size_t>(p.batch * p.global_count), 0.0f);
    for (std::int64_t b = 0; b < p.batch; ++b) {
      std::int64_t count = 0;
      for (std::int64_t j = 0; j < p.key_length; ++j) {  // (j: a key row of the blocks, key_row(j) its position)
        const bool blocked = padded(b, key_row(j)) || global_key(j);
        blocked_[b * p.key_length + j] = blocked ? 1.0f : 0.0f;
        padded_before_[b * (p.key_length + 1) + j] = count;
        count += blocked ? 1 : 0;
      }
      padded_before_[b * (p.key_length + 1) + p.key_length] = count;
      for (std::int64_t g = 0; g < p.global_count; ++g)
        global_blocked_[b * p.global_count + g] = padded(b, p.global_tokens[g]) ? 1.0f : 0.0f;
    }
  }

  // [lo, hi): the keys query i of batch b may see before the padding flags,
  // the dilation and the block mask, as a query of the local pattern.
  // By residue class (by_residue()), i and the range are rows of the
  // permuted order: query i's class holds the keys of its residue, a dense
  // window of ceil(window / dilation) of them.
  void range(std::int64_t b, std::int64_t i, std::int64_t* lo, std::int64_t* hi) const {
    std::int64_t position = i + p_.key_length - p_.query_length;
    std::int64_t keys = p_.key_length, window = p_.window, length = keys, class_start = 0;
    if (p_.key_lengths != nullptr) length = p_.key_lengths[b];
    if (by_residue_) {  // the same definition within the class: position, keys and length count its members
      position = query_rows_[i] + p_.key_length - p_.query_length;
      const std::int64_t residue = position % dilation_;
      class_start = class_start_[residue];
      keys = class_start_[residue + 1] - class_start;
      position /= dilation_;
      if (window > 0) window = (window - 1) / dilation_ + 1;
      length = length > residue ? ceil_div(length - residue, dilation_) : 0;
    }
    std::int64_t first = 0;
    std::int64_t end = std::min(keys, length);
    if (p_.causal) end = std::min(end, position + 1);
    if (window > 0) {
      first = std::max<std::int64_t>(first, position - window + 1);
      if (!p_.causal) end = std::min(end, position + window);
    }
    *lo = class_start + std::max<std::int64_t>(first, 0);
    *hi = class_start + std::max(end, *lo - class_start);
  }

  // Under a dilation without global tokens, a block mask or dropout, the
  // blocks run the queries and keys permuted into residue classes modulo the
  // dilation (positions 0, s, 2s, ..., then 1, s + 1, ...): within a class
  // the dilated window is a dense window, and the classes' key ranges follow
  // each other, so the blocks skip every key a class does not see instead of
  // masking (s - 1) / s of the band. query_row / key_row: the query and key
  // at row i of the order (the identity otherwise).
  bool by_residue() const { return by_residue_; }
  std::int64_t query_row(std::int64_t i) const { return by_residue_ ? query_rows_[i] : i; }
  std::int64_t key_row(std::int64_t j) const { return by_residue_ ? key_rows_[j] : j; }
  const std::int64_t* query_order() const { return by_residue_ ? query_rows_.data() : nullptr; }
  const std::int64_t* key_order() const { return by_residue_ ? key_rows_.data() : nullptr; }

  // The blocks of queries, in order: bq consecutive ones at a time, cut
  // where a row of the block mask starts (when its rows hold at least a
  // vector of queries), so that a block's keys are those of one layout row
  // instead of the union of two.
  std::vector<Queries> query_blocks(std::int64_t bq) const {
    std::vector<Queries> blocks;
    const std::int64_t shift = p_.key_length - p_.query_length;
    const bool by_row = p_.block_mask != nullptr && p_.block_size >= kColumnMultiple;
    for (std::int64_t i0 = 0; i0 < p_.query_length;) {
      std::int64_t i1 = std::min(p_.query_length, i0 + bq);
      if (by_row) i1 = std::min(i1, ((i0 + shift) / p_.block_size + 1) * p_.block_size - shift);
      blocks.push_back(Queries{i0, i1 - i0, nullptr});
      i0 = i1;
    }
    return blocks;
  }

  // Calls visit(j0, j1) for the key blocks (block_end) a block of queries
  // may see, in order: those over the keys its ranges reach (global
  // queries: the prefix they see) and, under a block mask, in a column one
  // of its query rows shows. The blocks skipped are ones classify() finds
  // hidden; the loop costs the blocks it visits, not the length.
  template <class Visit>
  void for_each_key_block(std::int64_t b, const Queries& queries, std::int64_t bk, Visit&& visit) const {
    std::int64_t lo = 0, hi = 0;
    if (queries.list != nullptr) {
      hi = global_end(b, queries[queries.rows - 1]);
    } else {
      std::int64_t first_hi, last_lo;
      range(b, queries.row0, &lo, &first_hi);
      range(b, queries.row0 + queries.rows - 1, &last_lo, &hi);
    }
    auto visit_keys = [&](std::int64_t j0, std::int64_t j1) {
      // Without a block mask the blocks start at the first key reached, so
      // a band's edges fall into as few partial blocks as they can (a
      // window's lower edge into the first, the diagonal into the last);
      // under a block mask they lie on the layout's grid.
      std::int64_t start = j0;
      if (p_.block_mask != nullptr) {
        start = j0 / p_.block_size * p_.block_size;
        start += (j0 - start) / bk * bk;
      }
      for (; start < j1; start = block_end(start, bk)) visit(start, block_end(start, bk));
    };
    if (p_.block_mask == nullptr || queries.list != nullptr) {
      if (lo < hi) visit_keys(lo, hi);
      return;
    }
    const std::int64_t shift = p_.key_length - p_.query_length;
    const std::int64_t first_row = (queries.row0 + shift) / p_.block_size;
    const std::int64_t last_row = (queries.row0 + queries.rows - 1 + shift) / p_.block_size;
    for (std::int64_t column = lo / p_.block_size; column * p_.block_size < hi; ++column) {
      bool shown = false;
      for (std::int64_t row = first_row; row <= last_row && !shown; ++row)
        shown = p_.block_mask[row * p_.block_columns + column] != 0;
      if (shown) visit_keys(std::max(lo, column * p_.block_size), std::min(hi, (column + 1) * p_.block_size));
    }
  }

  // Where the key block that starts at j0 ends: bk keys on, or sooner, at the
  // end of the keys or of j0's column of the block mask.
  std::int64_t block_end(std::int64_t j0, std::int64_t bk) const {
    std::int64_t end = std::min(j0 + bk, p_.key_length);
    if (p_.block_mask != nullptr) end = std::min(end, (j0 / p_.block_size + 1) * p_.block_size);
    return end;
  }

  // A block of queries x keys [j0, j1) of batch b.
  //  - Consecutive queries [i0, i1): the local ranges' ends never decrease
  //    with the query, so the first and last query bound the block: hidden
  //    when every range ends before j0 or starts at j1 or later, every key
  //    is padding, or the block mask hides every query row; visible when
  //    every range covers [j0, j1), no key is padding, there is no dilation,
  //    the block mask shows every row and no query is global (those are
  //    masked out here); partial otherwise (which is always safe), with the
  //    keys before the first query's range and from the last query's end on
  //    left out (the causal diagonal: a triangle, not the whole block).
  //  - Global queries (a list, increasing): each sees the prefix [0, end)
  //    the causal order and the lengths allow; hidden past the last one's.
  BlockKeys classify(std::int64_t b, const Queries& queries, std::int64_t j0, std::int64_t j1) const {
    const BlockKeys hidden{BlockVisibility::hidden, j0, j0};
    const std::int64_t padded = padded_keys(b, j0, j1);
    if (padded == j1 - j0) return hidden;
    if (queries.list != nullptr) {
      const std::int64_t first_end = global_end(b, queries[0]), last_end = global_end(b, queries[queries.rows - 1]);
      if (last_end <= j0) return hidden;
      if (first_end >= j1 && padded == 0) return {BlockVisibility::visible, j0, j1};
      return {BlockVisibility::partial, j0, std::min(j1, last_end)};
    }
    const std::int64_t i0 = queries.row0, i1 = queries.row0 + queries.rows;
    std::int64_t first_lo, first_hi, last_lo, last_hi;
    range(b, i0, &first_lo, &first_hi);
    range(b, i1 - 1, &last_lo, &last_hi);
    if (last_hi <= j0 || first_lo >= j1) return hidden;
    const std::int64_t shift = p_.key_length - p_.query_length;
    bool all_shown = true;
    if (p_.block_mask != nullptr) {
      bool any_shown = false;
      const std::int64_t column = j0 / p_.block_size;
      for (std::int64_t row = (i0 + shift) / p_.block_size; row <= (i1 - 1 + shift) / p_.block_size; ++row) {
        const bool shown = p_.block_mask[row * p_.block_columns + column] != 0;
        any_shown = any_shown || shown;
        all_shown = all_shown && shown;
      }
      if (!any_shown) return hidden;
    }
    if (last_lo <= j0 && first_hi >= j1 && padded == 0 && !residue_masked() && all_shown &&
        global_queries(i0 + shift, i1 + shift) == 0)
      return {BlockVisibility::visible, j0, j1};
    return {BlockVisibility::partial, std::max(j0, first_lo), std::min(j1, last_hi)};
  }

  // The mask of a partial block of queries x the key block that starts at
  // j0 (within one column of the block mask): each query's key range as
  // floats and, under a dilation, the residue its keys must have; columns
  // past the queries (up to `columns`) see nothing. Consecutive queries:
  // the local ranges, empty where the block mask hides the query's row or
  // the query is global (its own blocks run it); global queries: [0, end).
  void fill_block(std::int64_t b, const Queries& queries, std::int64_t columns, std::int64_t j0, float* first,
                  float* end, float* residue) const {
    for (std::int64_t c = 0; c < columns; ++c) {
      std::int64_t lo = 0, hi = 0, key_residue = 0;
      if (c < queries.rows && queries.list != nullptr) {
        hi = global_end(b, queries[c]);
      } else if (c < queries.rows) {
        range(b, queries[c], &lo, &hi);
        const std::int64_t position = query_row(queries[c]) + p_.key_length - p_.query_length;
        if (global_query(position) ||
            (p_.block_mask != nullptr &&
             p_.block_mask[position / p_.block_size * p_.block_columns + j0 / p_.block_size] == 0))
          hi = lo;
        key_residue = (position % dilation_ + dilation_) % dilation_;
      }
      first[c] = static_cast<float>(lo);
      end[c] = static_cast<float>(hi);
      residue[c] = static_cast<float>(key_residue);
    }
  }
  // The BlockMask of a partial block from fill_block's arrays.
  BlockMask block_mask(std::int64_t b, const Queries& queries, std::int64_t j0, const float* first, const float* end,
                       const float* residue) const {
    const float* blocked = key_blocked(b);
    const bool residues = residue_masked() && queries.list == nullptr;  // (a global query sees every residue)
    return {first, end, blocked != nullptr ? blocked + j0 : nullptr, j0, residues ? residue : nullptr, dilation_};
  }

  // The global pass: the gathered global tokens each query sees, a prefix
  // [0, end) of them (all of them, or under causal those at its position
  // or before), as floats; 0 past the queries, and for a global query among
  // consecutive ones (its own block runs it). Padding: global_blocked.
  void fill_global_rows(const Queries& queries, std::int64_t columns, float* end) const {
    for (std::int64_t c = 0; c < columns; ++c) {
      std::int64_t n = 0;
      const std::int64_t position = c < queries.rows ? queries[c] + p_.key_length - p_.query_length : 0;
      if (c < queries.rows && (queries.list != nullptr || !global_query(position)))
        n = !p_.causal ? p_.global_count : global_before_[std::clamp<std::int64_t>(position + 1, 0, p_.key_length)];
      end[c] = static_cast<float>(n);
    }
  }
  // The queries that are global tokens, increasing (their own blocks).
  const std::vector<std::int64_t>& global_query_rows() const { return global_query_rows_; }
  const float* global_blocked(std::int64_t b) const {
    return global_blocked_.empty() ? nullptr : global_blocked_.data() + b * p_.global_count;
  }

  // The keys query i of batch b sees, increasing, appended to `keys`: the
  // definition the blocks follow, key by key, visiting only the keys in the
  // query's range on its residue and in the block-mask columns its row
  // shows, and the global tokens (the decode path reads these and no
  // others). Not by residue class: i is a query, the keys are positions.
  void visible_keys(std::int64_t b, std::int64_t i, std::vector<std::int64_t>& keys) const {
    const std::int64_t position = i + p_.key_length - p_.query_length;
    const std::int64_t end = global_end(b, i);  // what the causal order and the length allow
    if (global_query(position)) {
      for (std::int64_t j = 0; j < end; ++j)
        if (!padded(b, j)) keys.push_back(j);
      return;
    }
    std::int64_t g = 0;  // the global tokens before key j, merged in order
    auto globals_before = [&](std::int64_t j) {
      for (; g < p_.global_count && p_.global_tokens[g] < j; ++g)
        if (p_.global_tokens[g] < end && !padded(b, p_.global_tokens[g])) keys.push_back(p_.global_tokens[g]);
    };
    auto on_residue = [&](std::int64_t j) { return j + ((position - j) % dilation_ + dilation_) % dilation_; };
    std::int64_t lo, hi;
    range(b, i, &lo, &hi);
    for (std::int64_t j = on_residue(lo); j < hi;) {
      if (p_.block_mask != nullptr &&
          p_.block_mask[position / p_.block_size * p_.block_columns + j / p_.block_size] == 0) {
        j = on_residue((j / p_.block_size + 1) * p_.block_size);  // the next column
        continue;
      }
      globals_before(j);
      if (!padded(b, j) && !global_key(j)) keys.push_back(j);
      j += dilation_;
    }
    globals_before(p_.key_length);
  }

  // The flags of batch b's keys outside the blocks (1 = padding or a global
  // token), or null when there are none.
  const float* key_blocked(std::int64_t b) const {
    return blocked_.empty() ? nullptr : blocked_.data() + b * p_.key_length;
  }
  std::int64_t padded_keys(std::int64_t b, std::int64_t j0, std::int64_t j1) const {
    if (padded_before_.empty()) return 0;
    const std::int64_t* count = padded_before_.data() + b * (p_.key_length + 1);
    return count[j1] - count[j0];
  }

 private:
  // The blocks mask each key's residue (a dilation, not by residue class).
  bool residue_masked() const { return dilation_ > 1 && !by_residue_; }

  // query_rows_, key_rows_ and class_start_ of the residue classes.
  void order_by_residue() {
    const std::int64_t shift = p_.key_length - p_.query_length;
    class_start_.assign(static_cast<std::size_t>(dilation_ + 1), 0);
    for (std::int64_t r = 0; r < dilation_; ++r)
      class_start_[r + 1] = class_start_[r] + (p_.key_length > r ? ceil_div(p_.key_length - r, dilation_) : 0);
    for (std::int64_t r = 0; r < dilation_; ++r) {
      for (std::int64_t j = r; j < p_.key_length; j += dilation_) key_rows_.push_back(j);
      for (std::int64_t position = (shift + dilation_ - 1 - r) / dilation_ * dilation_ + r; position < p_.key_length;
           position += dilation_)
        query_rows_.push_back(position - shift);
    }
  }

  bool padded(std::int64_t b, std::int64_t j) const {
    return (p_.key_lengths != nullptr && j >= p_.key_lengths[b]) ||
           (p_.key_padding != nullptr && p_.key_padding[b * p_.key_length + j] != 0);
  }
  bool global_key(std::int64_t j) const { return global_queries(j, j + 1) > 0; }
  // The keys a global query i sees, [0, end): those the causal order and
  // the batch's length allow.
  std::int64_t global_end(std::int64_t b, std::int64_t i) const {
    std::int64_t end = p_.key_length;
    if (p_.causal) end = std::min(end, i + p_.key_length - p_.query_length + 1);
    if (p_.key_lengths != nullptr) end = std::min(end, p_.key_lengths[b]);
    return std::max<std::int64_t>(end, 0);
  }
  bool global_query(std::int64_t position) const { return global_queries(position, position + 1) > 0; }
  // The global tokens at positions [p0, p1) (positions outside the keys hold none).
  std::int64_t global_queries(std::int64_t p0, std::int64_t p1) const {
    if (global_before_.empty()) return 0;
    p0 = std::clamp<std::int64_t>(p0, 0, p_.key_length);
    p1 = std::clamp<std::int64_t>(p1, 0, p_.key_length);
    return global_before_[p1] - global_before_[p0];
  }

  const AttentionProblem& p_;
  const std::int64_t dilation_;
  const bool by_residue_;
  std::vector<std::int64_t> query_rows_, key_rows_;  // by residue class: the order's query and key rows
  std::vector<std::int64_t> class_start_;            // by residue class: the first key row of each class, [s + 1]
  std::vector<float> blocked_;
  std::vector<std::int64_t> padded_before_;
  std::vector<std::int64_t> global_before_;  // global tokens before each position, [Tk + 1]
  std::vector<float> global_blocked_;        // [B x global_count]: 1 = padding
  std::vector<std::int64_t> global_query_rows_;
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

// Rows positions[0 .. count) of x (row stride ld), gathered contiguous, as
// copy_rows copies them: the global tokens' keys and values.
void gather_rows(float* packed, const float* x, std::int64_t ld, const std::int64_t* positions, std::int64_t count,
                 std::int64_t d, const float* key_blocked) {
  for (std::int64_t r = 0; r < count; ++r) copy_rows(packed + r * d, x + positions[r] * ld, ld, 1, d, nullptr);
  for (std::int64_t r = 0; r < count; ++r)
    if (key_blocked != nullptr && key_blocked[r] != 0.0f) std::fill(packed + r * d, packed + (r + 1) * d, 0.0f);
}

// Rows of x in the order of `order` (null: the first `count` in turn),
// gathered contiguous as copy_rows copies them.
void pack_rows(float* packed, const float* x, std::int64_t ld, const std::int64_t* order, std::int64_t count,
               std::int64_t d, const float* key_blocked) {
  if (order == nullptr) copy_rows(packed, x, ld, count, d, key_blocked);
  else gather_rows(packed, x, ld, order, count, d, key_blocked);
}

// Attention dropout on a block of queries x n keys (j0
// first) of head h in batch b; entry (i, j) is at block[i * query_stride + j *
// key_stride]. Zeroes the dropped entries and scales the kept ones. With
// `keys` (the global pass), key j of the block is keys[j], not j0 + j.
void apply_dropout(const RandomKernels& random, const AttentionProblem& p, float* block, std::int64_t query_stride,
                   std::int64_t key_stride, const Queries& queries, std::int64_t n, std::int64_t b, std::int64_t h,
                   std::int64_t j0, std::uint32_t* bits, const std::int64_t* keys = nullptr) {
  for (std::int64_t i = 0; i < queries.rows; ++i) {
    const std::int64_t row = ((b * p.heads + h) * p.query_length + queries[i]) * p.key_length;
    if (keys == nullptr) random.random_bits(bits, row + j0, n, p.dropout_seed, p.dropout_offset);
    else
      for (std::int64_t j = 0; j < n; ++j)
        random.random_bits(bits + j, row + keys[j], 1, p.dropout_seed, p.dropout_offset);
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
// cache once, with no packing, and only the keys the mask lets through (a
// window's, on the dilation's residue, in the block mask's shown columns,
// the global tokens: AttentionMask::visible_keys). The rows of a kv head's
// group are done together so K and V are read once for all of them; when
// there are fewer
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
  const AttentionMask mask(p, false);
  // Per batch, the keys to read: those some query sees (all a pattern
  // hides are skipped, never read), and with several queries which of them
  // each sees, [Tq x keys]. Serial: about a nanosecond per key, next to the
  // 2 Hkv D floats each key read costs.
  std::vector<std::vector<std::int64_t>> keys(static_cast<std::size_t>(p.batch));
  std::vector<std::vector<std::uint8_t>> shown(static_cast<std::size_t>(p.batch));
  std::vector<std::vector<std::int64_t>> each(static_cast<std::size_t>(p.query_length));
  std::vector<std::int64_t> merged;
  for (std::int64_t b = 0; b < p.batch; ++b) {
    std::vector<std::int64_t>& all = keys[b];
    if (p.query_length == 1) {
      mask.visible_keys(b, 0, all);
      continue;
    }
    for (std::int64_t i = 0; i < p.query_length; ++i) {
      each[i].clear();
      mask.visible_keys(b, i, each[i]);
      merged.clear();
      std::set_union(all.begin(), all.end(), each[i].begin(), each[i].end(), std::back_inserter(merged));
      all.swap(merged);
    }
    const std::int64_t n = static_cast<std::int64_t>(all.size());
    shown[b].assign(static_cast<std::size_t>(p.query_length * n), 0);
    for (std::int64_t i = 0; i < p.query_length; ++i)
      for (std::int64_t index = 0, own = 0; index < n; ++index)
        if (own < static_cast<std::int64_t>(each[i].size()) && each[i][own] == all[index]) {
          shown[b][i * n + index] = 1;
          ++own;
        }
  }
  std::int64_t most_keys = 1;
  for (const auto& list : keys) most_keys = std::max(most_keys, static_cast<std::int64_t>(list.size()));
  // Work items: (batch, share of its keys). With fewer batches than threads
  // the keys are split (split-KV) and the partial softmaxes merged below.
  const std::int64_t threads = get_num_threads();
  const std::int64_t splits =
      std::max<std::int64_t>(1, std::min(ceil_div(threads, p.batch), most_keys / kDecodeMinimumKeysPerSplit));
  const std::int64_t keys_per_split = ceil_div(most_keys, splits);
  // per (batch, split): acc [total_rows x d], max [total_rows], sum [total_rows]
  const std::int64_t partial_size = total_rows * (d + 2);
  ScratchBuffer partials(p.batch * splits * partial_size);

  parallel_for(p.batch * splits, 1, [&](std::int64_t i0, std::int64_t i1) {
    ScratchBuffer scores(total_rows * keys_per_split);
    ScratchBuffer queries(total_rows * d);
    for (std::int64_t item = i0; item < i1; ++item) {
      const std::int64_t b = item / splits, split = item % splits;
      const std::int64_t n = static_cast<std::int64_t>(keys[b].size());
      const std::int64_t first = std::min(n, split * keys_per_split);
      const std::int64_t count = std::min(n, first + keys_per_split) - first;
      // gather the query rows: row g * rows + r is head g * group + r / Tq, query r % Tq
      for (int row = 0; row < total_rows; ++row) {
        const int g = row / rows, r = row % rows;
        const std::int64_t h = g * group + r / p.query_length, i = r % p.query_length;
        std::memcpy(queries.data() + row * d, q + (b * p.query_length + i) * p.q_stride + h * d, d * sizeof(float));
      }
      float* partial = partials.data() + item * partial_size;
      ops.decode_partial(partial, partial + total_rows * d, partial + total_rows * (d + 1), scores.data(),
                         queries.data(), rows, static_cast<int>(p.kv_heads), k + b * p.key_length * p.k_stride,
                         v + b * p.key_length * p.v_stride, p.k_stride, p.v_stride, keys[b].data() + first, count, d,
                         p.scale, shown[b].empty() ? nullptr : shown[b].data() + first, n,
                         static_cast<int>(p.query_length));
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
  const std::int64_t bq = query_block_size(ops.query_block, p);
  const std::int64_t bk = key_block_size(bq, d);
  const AttentionMask mask(p, true);
  const std::vector<Queries> blocks = mask.query_blocks(bq);
  const std::int64_t query_blocks = static_cast<std::int64_t>(blocks.size());

  // K and V of every (batch, kv head), contiguous and with padding zeroed,
  // copied once and shared by the group's heads and every query block.
  // The global tokens' keys and values are gathered the same way.
  const std::int64_t kv_size = p.key_length * d, global_size = p.global_count * d;
  ScratchBuffer packed_k(p.batch * p.kv_heads * kv_size), packed_v(p.batch * p.kv_heads * kv_size);
  ScratchBuffer global_k(p.batch * p.kv_heads * global_size), global_v(p.batch * p.kv_heads * global_size);
  parallel_for(p.batch * p.kv_heads, 1, [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t item = i0; item < i1; ++item) {
      const std::int64_t b = item / p.kv_heads, g = item % p.kv_heads;
      const float* k_rows = k + b * p.key_length * p.k_stride + g * d;
      const float* v_rows = v + b * p.key_length * p.v_stride + g * d;
      pack_rows(packed_k.data() + item * kv_size, k_rows, p.k_stride, mask.key_order(), p.key_length, d,
                mask.key_blocked(b));
      pack_rows(packed_v.data() + item * kv_size, v_rows, p.v_stride, mask.key_order(), p.key_length, d,
                mask.key_blocked(b));
      gather_rows(global_k.data() + item * global_size, k_rows, p.k_stride, p.global_tokens, p.global_count, d,
                  mask.global_blocked(b));
      gather_rows(global_v.data() + item * global_size, v_rows, p.v_stride, p.global_tokens, p.global_count, d,
                  mask.global_blocked(b));
    }
  });

  // A block of queries of head h in batch b against every key block the
  // mask lets through, then the gathered global tokens; writes its rows of
  // out and lse.
  struct Scratch {
    ScratchBuffer qt, scores, accumulator, columns_state, rows;
    std::vector<std::uint32_t> bits;
  };
  auto run_block = [&](Scratch& scratch, std::int64_t b, std::int64_t h, const Queries& queries) {
    float* running_max = scratch.columns_state.data();  // per query: max, sum, correction, block max,
    float* running_sum = running_max + bq;              // first and end key and residue (fill_block),
    float* correction = running_sum + bq;               // the global tokens it sees, a row of zeros
    float* column_max = correction + bq;
    float* first_key = column_max + bq;
    float* end_key = first_key + bq;
    float* residue = end_key + bq;
    float* global_end = residue + bq;
    float* zeros = global_end + bq;
    float* qt = scratch.qt.data();
    float* scores = scratch.scores.data();
    float* accumulator = scratch.accumulator.data();
    const std::int64_t rows = queries.rows;
    const std::int64_t columns = std::min(bq, round_up(rows, kColumnMultiple));
    const float* head_k = packed_k.data() + (b * p.kv_heads + h / group) * kv_size;
    const float* head_v = packed_v.data() + (b * p.kv_heads + h / group) * kv_size;
    const float* head_q = q + b * p.query_length * p.q_stride + h * d;
    // The global queries and the residue classes' are gathered.
    const bool gathered = queries.list != nullptr || mask.by_residue();
    if (!gathered) {
      ops.transpose_rows(qt, bq, columns, head_q + queries.row0 * p.q_stride, p.q_stride, rows, d);
    } else {
      for (std::int64_t c = 0; c < rows; ++c)
        std::memcpy(scratch.rows.data() + c * d, head_q + mask.query_row(queries[c]) * p.q_stride, d * sizeof(float));
      ops.transpose_rows(qt, bq, columns, scratch.rows.data(), d, rows, d);
    }
    std::fill(zeros, zeros + bq, 0.0f);
    std::fill(running_max, running_max + columns, kNegativeInfinity);
    std::fill(running_sum, running_sum + columns, 0.0f);
    std::fill(accumulator, accumulator + rows * d, 0.0f);
    // One online-softmax step per block of keys: S^T, the softmax, O = O *
    // correction + P V (P read key-major from the score block).
    auto step = [&](const float* block_k, const float* block_v, std::int64_t j0, std::int64_t n,
                    const BlockMask* block_mask, const std::int64_t* dropout_keys) {
      std::fill(column_max, column_max + columns, kNegativeInfinity);
      ops.block_scores(scores, bq, column_max, block_k, d, qt, bq, n, columns, d, p.scale, block_mask);
      ops.softmax_block(scores, bq, n, columns, column_max, running_max, running_sum, correction);
      // The normalizer counts every key; only the weights that reach V are dropped.
      if (p.dropout_drop_below != 0)
        apply_dropout(random, p, scores, 1, bq, queries, n, b, h, j0, scratch.bits.data(), dropout_keys);
      ops.block_product(accumulator, d, scores, 1, bq, block_v, d, rows, n, d, correction);
    };
    mask.for_each_key_block(b, queries, bk, [&](std::int64_t block, std::int64_t block_end) {
      const BlockKeys keys = mask.classify(b, queries, block, block_end);
      if (keys.visibility == BlockVisibility::hidden) return;
      const std::int64_t j0 = keys.begin;
      const bool partial = keys.visibility == BlockVisibility::partial;
      if (partial) mask.fill_block(b, queries, columns, j0, first_key, end_key, residue);
      const BlockMask block_mask = mask.block_mask(b, queries, j0, first_key, end_key, residue);
      step(head_k + j0 * d, head_v + j0 * d, j0, keys.end - j0, partial ? &block_mask : nullptr, nullptr);
    });
    // The global pass: the gathered global tokens, those of them each query sees.
    const std::int64_t item_global = (b * p.kv_heads + h / group) * global_size;
    if (p.global_count > 0) mask.fill_global_rows(queries, columns, global_end);
    for (std::int64_t g0 = 0; g0 < p.global_count; g0 += bk) {
      const std::int64_t n = std::min(bk, p.global_count - g0);
      if (*std::max_element(global_end, global_end + rows) <= g0) break;
      const BlockMask block_mask{zeros, global_end, mask.global_blocked(b) + g0, g0, nullptr, 1};
      step(global_k.data() + item_global + g0 * d, global_v.data() + item_global + g0 * d, g0, n, &block_mask,
           p.global_tokens + g0);
    }
    // A row with every key masked has sum 0: its output is 0, not NaN. (A
    // NaN sum, from a NaN among the visible keys, stays NaN.)
    float* out_rows = out + b * p.query_length * ldo + h * d;
    if (!gathered) {
      ops.normalize_rows(out_rows + queries.row0 * ldo, ldo, accumulator, rows, d, running_sum);
    } else {  // normalized, then scattered
      ops.normalize_rows(scratch.rows.data(), d, accumulator, rows, d, running_sum);
      for (std::int64_t c = 0; c < rows; ++c)
        std::memcpy(out_rows + mask.query_row(queries[c]) * ldo, scratch.rows.data() + c * d, d * sizeof(float));
    }
    // lse = max + log(sum) rounded once (in double): backward's P = e^(s -
    // lse) carries lse's rounding into every weight of the row
    for (std::int64_t c = 0; c < rows; ++c)
      lse[(b * p.heads + h) * p.query_length + mask.query_row(queries[c])] =
          running_sum[c] != 0.0f ? static_cast<float>(running_max[c] + std::log(static_cast<double>(running_sum[c])))
                                 : kNegativeInfinity;
  };
  auto scratch = [&] {
    return Scratch{ScratchBuffer(d * bq), ScratchBuffer(bk * bq),
                   ScratchBuffer(bq * d), ScratchBuffer(9 * bq),
                   ScratchBuffer(bq * d), std::vector<std::uint32_t>(static_cast<std::size_t>(bk))};
  };

  // One work item per (batch, head, query block); the query blocks of a
  // head interleaved (interleaved_block). Global queries are masked out of
  // these blocks; their own blocks, gathered, run after and write their rows.
  parallel_for(p.batch * p.heads * query_blocks, 1, [&](std::int64_t item0, std::int64_t item1) {
    Scratch buffers = scratch();
    for (std::int64_t item = item0; item < item1; ++item) {
      const std::int64_t b = item / (p.heads * query_blocks);
      const std::int64_t h = item / query_blocks % p.heads;
      run_block(buffers, b, h, blocks[interleaved_block(item % query_blocks, query_blocks)]);
    }
  });
  const std::vector<std::int64_t>& global_rows = mask.global_query_rows();
  const std::int64_t global_blocks = ceil_div(static_cast<std::int64_t>(global_rows.size()), bq);
  parallel_for(p.batch * p.heads * global_blocks, 1, [&](std::int64_t item0, std::int64_t item1) {
    Scratch buffers = scratch();
    for (std::int64_t item = item0; item < item1; ++item) {
      const std::int64_t b = item / (p.heads * global_blocks), h = item / global_blocks % p.heads;
      const std::int64_t first = item % global_blocks * bq;
      const std::int64_t rows = std::min<std::int64_t>(bq, static_cast<std::int64_t>(global_rows.size()) - first);
      run_block(buffers, b, h, Queries{0, rows, global_rows.data() + first});
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
  const std::int64_t bq = query_block_size(ops.query_block, p);
  const std::int64_t bk = key_block_size(bq, d);
  const AttentionMask mask(p, true);
  const std::vector<Queries> local_blocks = mask.query_blocks(bq);
  const std::int64_t query_blocks = static_cast<std::int64_t>(local_blocks.size());
  // Blocks t < query_blocks: consecutive queries (rows of the mask's order),
  // the global ones masked out; then the global queries, gathered
  // (global_rows), in blocks of their own, as forward runs them.
  const std::vector<std::int64_t>& global_rows = mask.global_query_rows();
  const std::int64_t global_count = static_cast<std::int64_t>(global_rows.size());
  const std::int64_t blocks = query_blocks + ceil_div(global_count, bq);
  auto block_queries = [&](std::int64_t t) {
    if (t < query_blocks) return local_blocks[t];
    const std::int64_t first = (t - query_blocks) * bq;
    return Queries{0, std::min(bq, global_count - first), global_rows.data() + first};
  };

  // One work item per (batch, kv head): it owns dK and dV of that head and dQ
  // of the query heads of its group, so no two threads write the same value
  // and every sum runs in one fixed order, whatever the thread count. Key
  // blocks outer: a block's K and V (and its rows of dK and dV) stay in cache
  // while the query blocks that see it pass. Every operand and sum is a
  // contiguous copy (copy_rows); the strided arrays are read and written once.
  parallel_for(p.batch * p.kv_heads, 1, [&](std::int64_t item0, std::int64_t item1) {
    const std::int64_t kv_size = p.key_length * d, q_size = p.query_length * d;
    ScratchBuffer head_k(kv_size), head_v(kv_size), dk_sum(kv_size), dv_sum(kv_size);
    // the gathered global tokens (the global pass) and their sums
    const std::int64_t global_size = p.global_count * d;
    ScratchBuffer head_global_k(global_size), head_global_v(global_size), dk_global(global_size),
        dv_global(global_size);
    // per query block of the current head: Q^T and dO^T [d x bq]; its rows of
    // Q and dO and the sum of dQ [Tq x d] (the global queries' gathered:
    // [global_count x d]); lse and delta
    ScratchBuffer qt(blocks * bq * d), dout_t(blocks * bq * d), out_t(bq * d), out_rows(bq * d);
    ScratchBuffer head_q(q_size), head_dout(q_size), dq_sum(q_size);
    const std::int64_t global_q_size = global_count * d;
    ScratchBuffer global_q(global_q_size), global_dout(global_q_size), dq_global(global_q_size);
    ScratchBuffer row_state(2 * blocks * bq);
    float* block_lse = row_state.data();
    float* delta = block_lse + blocks * bq;
    // the rows of Q, dO and the dQ sum of block t
    auto q_rows = [&](std::int64_t t) {
      return t < query_blocks ? head_q.data() + local_blocks[t].row0 * d
                              : global_q.data() + (t - query_blocks) * bq * d;
    };
    auto dout_rows = [&](std::int64_t t) {
      return t < query_blocks ? head_dout.data() + local_blocks[t].row0 * d
                              : global_dout.data() + (t - query_blocks) * bq * d;
    };
    auto dq_rows = [&](std::int64_t t) {
      return t < query_blocks ? dq_sum.data() + local_blocks[t].row0 * d
                              : dq_global.data() + (t - query_blocks) * bq * d;
    };
    // The (key block, query block) pairs the mask lets through, key blocks
    // outer and the query blocks of each in order (for_each_key_block).
    struct BlockPair {
      std::int64_t j0, j1, t;
    };
    std::vector<BlockPair> pairs;
    // the mask of the current block (fill_block), the global tokens each
    // query sees and a row of zeros
    ScratchBuffer block_state(5 * bq);
    float* first_key = block_state.data();
    float* end_key = first_key + bq;
    float* residue = end_key + bq;
    float* global_end = residue + bq;
    float* zeros = global_end + bq;
    std::fill(zeros, zeros + bq, 0.0f);
    ScratchBuffer scores(bk * bq), dscores(bk * bq);
    std::vector<std::uint32_t> bits(static_cast<std::size_t>(bk));
    for (std::int64_t item = item0; item < item1; ++item) {
      const std::int64_t b = item / p.kv_heads;
      const std::int64_t g = item % p.kv_heads;
      const float* blocked = mask.key_blocked(b);
      pack_rows(head_k.data(), k + b * p.key_length * p.k_stride + g * d, p.k_stride, mask.key_order(), p.key_length, d,
                blocked);
      pack_rows(head_v.data(), v + b * p.key_length * p.v_stride + g * d, p.v_stride, mask.key_order(), p.key_length, d,
                blocked);
      pairs.clear();
      for (std::int64_t t = 0; t < blocks; ++t)
        mask.for_each_key_block(b, block_queries(t), bk,
                                [&](std::int64_t j0, std::int64_t j1) { pairs.push_back(BlockPair{j0, j1, t}); });
      std::stable_sort(pairs.begin(), pairs.end(), [](const BlockPair& x, const BlockPair& y) { return x.j0 < y.j0; });
      gather_rows(head_global_k.data(), k + b * p.key_length * p.k_stride + g * d, p.k_stride, p.global_tokens,
                  p.global_count, d, mask.global_blocked(b));
      gather_rows(head_global_v.data(), v + b * p.key_length * p.v_stride + g * d, p.v_stride, p.global_tokens,
                  p.global_count, d, mask.global_blocked(b));
      std::fill(dk_sum.data(), dk_sum.data() + kv_size, 0.0f);
      std::fill(dv_sum.data(), dv_sum.data() + kv_size, 0.0f);
      std::fill(dk_global.data(), dk_global.data() + global_size, 0.0f);
      std::fill(dv_global.data(), dv_global.data() + global_size, 0.0f);

      for (std::int64_t h = g * group; h < (g + 1) * group; ++h) {
        const float* out_head = out + b * p.query_length * ldo + h * d;
        const float* head_lse = lse + (b * p.heads + h) * p.query_length;
        pack_rows(head_q.data(), q + b * p.query_length * p.q_stride + h * d, p.q_stride, mask.query_order(),
                  p.query_length, d, nullptr);
        pack_rows(head_dout.data(), dout + b * p.query_length * ldo + h * d, ldo, mask.query_order(), p.query_length, d,
                  nullptr);
        std::fill(dq_sum.data(), dq_sum.data() + q_size, 0.0f);
        std::fill(dq_global.data(), dq_global.data() + global_q_size, 0.0f);
        for (std::int64_t c = 0; c < global_count; ++c) {
          std::memcpy(global_q.data() + c * d, head_q.data() + global_rows[c] * d, d * sizeof(float));
          std::memcpy(global_dout.data() + c * d, head_dout.data() + global_rows[c] * d, d * sizeof(float));
        }
        for (std::int64_t t = 0; t < blocks; ++t) {
          const Queries queries = block_queries(t);
          const std::int64_t rows = queries.rows;
          ops.transpose_rows(qt.data() + t * bq * d, bq, bq, q_rows(t), d, rows, d);
          ops.transpose_rows(dout_t.data() + t * bq * d, bq, bq, dout_rows(t), d, rows, d);
          // delta = rowsum(dO * O), summed as dP = dO V^T sums (column_dot)
          for (std::int64_t c = 0; c < rows; ++c) {
            std::memcpy(out_rows.data() + c * d, out_head + mask.query_row(queries[c]) * ldo, d * sizeof(float));
            block_lse[t * bq + c] = head_lse[mask.query_row(queries[c])];
          }
          ops.transpose_rows(out_t.data(), bq, bq, out_rows.data(), d, rows, d);
          ops.column_dot(delta + t * bq, out_t.data(), dout_t.data() + t * bq * d, bq, bq, d);
          // columns past the last query: no key seen, P = 0
          std::fill(block_lse + t * bq + rows, block_lse + (t + 1) * bq, kNegativeInfinity);
          std::fill(delta + t * bq + rows, delta + (t + 1) * bq, 0.0f);
        }
        // One block of keys against query block t: recompute S^T = scale K
        // Q^T as forward computed it (the same products in the same order:
        // the same scores, consistent with the saved lse) and dP^T = V dO^T,
        // then dS; dV += P^T dO and dK += dS^T Q (scaled once, at the end),
        // the blocks read row by row; dQ += dS K, read key-major.
        auto step = [&](std::int64_t t, const float* block_k, const float* block_v, float* block_dk, float* block_dv,
                        std::int64_t j0, std::int64_t n, const BlockMask* block_mask,
                        const std::int64_t* dropout_keys) {
          const Queries queries = block_queries(t);
          const std::int64_t rows = queries.rows;
          const std::int64_t columns = std::min(bq, round_up(rows, kColumnMultiple));
          ops.block_scores(scores.data(), bq, nullptr, block_k, d, qt.data() + t * bq * d, bq, n, columns, d, p.scale,
                           block_mask);
          ops.block_scores(dscores.data(), bq, nullptr, block_v, d, dout_t.data() + t * bq * d, bq, n, columns, d, 1.0f,
                           nullptr);
          // With dropout, out = (P o M) V: the gradient reaching P is dP o M,
          // and dV takes P o M (M: the same mask, scaled, regenerated here).
          if (p.dropout_drop_below != 0)
            apply_dropout(random, p, dscores.data(), 1, bq, queries, n, b, h, j0, bits.data(), dropout_keys);
          ops.softmax_gradient_block(scores.data(), dscores.data(), bq, n, columns, block_lse + t * bq, delta + t * bq);
          if (p.dropout_drop_below != 0)
            apply_dropout(random, p, scores.data(), 1, bq, queries, n, b, h, j0, bits.data(), dropout_keys);
          ops.block_product(block_dv, d, scores.data(), bq, 1, dout_rows(t), d, n, rows, d, nullptr);
          ops.block_product(block_dk, d, dscores.data(), bq, 1, q_rows(t), d, n, rows, d, nullptr);
          ops.block_product(dq_rows(t), d, dscores.data(), 1, bq, block_k, d, rows, n, d, nullptr);
        };
        for (const BlockPair& pair : pairs) {
          const Queries queries = block_queries(pair.t);
          const BlockKeys keys = mask.classify(b, queries, pair.j0, pair.j1);
          if (keys.visibility == BlockVisibility::hidden) continue;
          const std::int64_t j0 = keys.begin;
          const bool partial = keys.visibility == BlockVisibility::partial;
          if (partial) mask.fill_block(b, queries, bq, j0, first_key, end_key, residue);
          const BlockMask block_mask = mask.block_mask(b, queries, j0, first_key, end_key, residue);
          step(pair.t, head_k.data() + j0 * d, head_v.data() + j0 * d, dk_sum.data() + j0 * d, dv_sum.data() + j0 * d,
               j0, keys.end - j0, partial ? &block_mask : nullptr, nullptr);
        }
        // The global pass, as forward's.
        for (std::int64_t t = 0; t < blocks && p.global_count > 0; ++t) {
          mask.fill_global_rows(block_queries(t), bq, global_end);
          const float seen = *std::max_element(global_end, global_end + bq);
          for (std::int64_t g0 = 0; g0 < p.global_count && seen > static_cast<float>(g0); g0 += bk) {
            const BlockMask block_mask{zeros, global_end, mask.global_blocked(b) + g0, g0, nullptr, 1};
            step(t, head_global_k.data() + g0 * d, head_global_v.data() + g0 * d, dk_global.data() + g0 * d,
                 dv_global.data() + g0 * d, g0, std::min(bk, p.global_count - g0), &block_mask, p.global_tokens + g0);
          }
        }
        // dQ = scale dS K: the scale once, on the sum (the global queries'
        // rows: their own blocks' sums, where the others left 0)
        for (std::int64_t c = 0; c < global_count; ++c)
          for (std::int64_t x = 0; x < d; ++x) dq_sum.data()[global_rows[c] * d + x] += dq_global.data()[c * d + x];
        float* dq_head = dq + b * p.query_length * p.q_stride + h * d;
        for (std::int64_t i = 0; i < p.query_length; ++i)
          for (std::int64_t x = 0; x < d; ++x)
            dq_head[mask.query_row(i) * p.q_stride + x] = dq_sum.data()[i * d + x] * p.scale;
      }
      // The global tokens' sums join their rows (where the blocks left 0).
      for (std::int64_t t = 0; t < p.global_count; ++t)
        for (std::int64_t x = 0; x < d; ++x) {
          dk_sum.data()[p.global_tokens[t] * d + x] += dk_global.data()[t * d + x];
          dv_sum.data()[p.global_tokens[t] * d + x] += dv_global.data()[t * d + x];
        }
      float* dk_head = dk + b * p.key_length * p.k_stride + g * d;
      float* dv_head = dv + b * p.key_length * p.v_stride + g * d;
      for (std::int64_t j = 0; j < p.key_length; ++j)
        for (std::int64_t x = 0; x < d; ++x) {
          dk_head[mask.key_row(j) * p.k_stride + x] = dk_sum.data()[j * d + x] * p.scale;
          dv_head[mask.key_row(j) * p.v_stride + x] = dv_sum.data()[j * d + x];
        }
    }
  });
}

}  // namespace attnkit::cpu
