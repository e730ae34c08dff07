// Sparse attention routing over a paged KV cache (Quest-style block selection, GQA-shared).
//
// Every block of a global layer keeps, per KV head, the per-channel minimum and maximum of
// the keys written into it (as stored: post-RoPE, rounded to the cache type). For a query q,
//   bound(block) = sum_i max(q_i * min_i, q_i * max_i)  >=  q . k  for every key k in it,
// so a block whose bound is low cannot hold a key the query attends to strongly. One
// selection serves all query heads of a KV head (score = max of the group's bounds: a block
// any head needs is kept). The first block (attention sink) and the last `recent_blocks`
// blocks before the query's own are always kept; the others are ranked by score, ties to the
// lower block, and the best fill the token budget. Attention then runs exactly over the
// selected blocks. All in f32, independent of threads and batch composition.
#pragma once
#include <cstddef>
#include <cstdint>

namespace g4 {

struct SparseAttentionOptions {
  bool enabled = false;
  int64_t budget_tokens = 2048;  // keys attended per query and KV head (rounded up to blocks)
  int64_t min_context = 4096;    // dense attention while the query's position is below this
  int recent_blocks = 1;         // blocks before the query's own always kept
  // Route prompt tokens too (a step of several tokens of one sequence), not only decoding
  // steps (one token). Off: prompts are read densely, as Quest does, so the representations
  // that later queries attend to are exact.
  bool prefill = false;
};

// The summaries of one KV head: logical block b's [2][hd] floats (min then max) are at
// base + table[b] * block_stride.
struct BlockSummaries {
  const float* base = nullptr;
  const int32_t* table = nullptr;
  size_t block_stride = 0;
  const float* at(int64_t b) const { return base + size_t(table[b]) * block_stride; }
};

// The bound for one block and one query head.
float block_bound(const float* q, const float* minmax, int hd);

// Chooses the blocks one query attends to.
//   q: [group][hd] the KV head's query heads (scaled, rotated, as attention uses them)
//   n_blocks: logical blocks holding positions 0..pos (the last one holds pos)
//   out: receives the selected logical block ids, ascending (at most n_blocks); returns the
//   count. scratch: n_blocks floats. Everything is selected when the budget covers n_blocks.
int select_blocks(const float* q, int group, int hd, const BlockSummaries& s, int64_t n_blocks,
                  int64_t budget_blocks, int recent_blocks, int32_t* out, float* scratch);

}  // namespace g4
