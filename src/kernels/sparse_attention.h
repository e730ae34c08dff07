// Sparse attention routing over a paged KV cache (Quest-style block selection, GQA-shared).
//
// Every page (page_tokens positions, within a KV block) of a global layer keeps, per KV head,
// the per-channel minimum and maximum of the keys written into it (as stored: post-RoPE,
// rounded to the cache type), as f16: minimums rounded down, maximums up (exact for an f16
// cache, whose keys are f16 values). For a query q,
//   bound(page) = sum_i max(q_i * min_i, q_i * max_i)  >=  q . k  for every key k in it,
// so a page whose bound is low cannot hold a key the query attends to strongly. One
// selection serves all query heads of a KV head (score = max of the group's bounds: a page
// any head needs is kept). The first page (attention sink) and the last `recent_pages` pages
// before the query's own are always kept; the others are ranked by score, ties to the lower
// page, and the best fill the token budget (nth_element: O(pages)). Attention then runs
// exactly over the selected pages. All in f32, independent of threads and batch composition.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace g4 {

struct SparseAttentionOptions {
  bool enabled = false;
  // Keys attended per query and KV head (rounded up to pages); 0: budget_share of the pages
  // up to the query's own, rounded up. The default, a quarter in pages of 8, is the setting
  // within mean KL 0.02 of dense at 4K and at 32K (README, "Long context"): a fixed count
  // drops a growing share as the context grows (2048 keys at 32K: mean KL 0.56).
  int64_t budget_tokens = 0;
  double budget_share = 0.25;
  int64_t min_context = 4096;  // dense attention while the query's position is below this
  // Selection unit: pages of this many positions (a power of two, at most a KV block); each
  // page keeps its own key bounds. Quest's lesson: small pages bound tightly.
  int page_tokens = 8;
  int recent_pages = 2;  // pages before the query's own always kept
  // Route prompt tokens too (a step of several tokens of one sequence), not only decoding
  // steps (one token). Off: prompts are read densely, as Quest does, so the representations
  // that later queries attend to are exact.
  bool prefill = false;
  // Diagnostic (--sparse-oracle): rank pages by the exact best q.k of their keys, read from
  // the cache, instead of the bound. As costly as dense attention; it shows how much of the
  // routing's loss is the ranking and how much the budget (README, "page oracle").
  bool oracle_rank = false;
};

// One summary value: f16 bits of a key channel's minimum rounded toward -inf (summary_lo) or
// maximum toward +inf (summary_hi), so the bound stays a bound; saturated at f16's largest
// finite magnitude, 65504 (a key beyond it, which no f16 cache can hold, would get a bound
// that is not one on that channel). Half of f32's bytes: page scoring streams them every step.
uint16_t summary_lo(float x);
uint16_t summary_hi(float x);

// The summaries of one KV head: logical page p's [2][hd] f16 values (min then max) are at
// base + table[p >> page_shift] * block_stride + (p mod 2^page_shift) * page_stride
// (table: the sequence's block table; 2^page_shift pages per block).
struct BlockSummaries {
  const uint16_t* base = nullptr;
  const int32_t* table = nullptr;
  size_t block_stride = 0;
  size_t page_stride = 0;
  int page_shift = 0;
  const uint16_t* at(int64_t p) const {
    return base + size_t(table[p >> page_shift]) * block_stride +
           size_t(p & ((int64_t(1) << page_shift) - 1)) * page_stride;
  }
};

// The bound for one page and one query head. Summed in one fixed order (8 lanes, a fixed
// reduction, see sparse_attention.cc), so the AVX-512, AVX2 and scalar paths give the same
// float and the selection does not depend on the CPU.
float block_bound(const float* q, const uint16_t* minmax, int hd);
// max over `group` query heads (q: [group][hd]) of block_bound: SIMD where the CPU has it,
// each head's pass reading the page's min/max once. The _scalar one is the portable path
// (tests compare the two bit for bit).
float group_page_bound(const float* q, int group, int hd, const uint16_t* minmax);
float group_page_bound_scalar(const float* q, int group, int hd, const uint16_t* minmax);

// The budget in pages for a query whose pages up to its own are n_pages (of page_tokens
// positions each): budget_tokens rounded up to pages, or ceil(budget_share * n_pages).
int64_t budget_pages(const SparseAttentionOptions& o, int64_t n_pages, int64_t page_tokens);
// "" when the options' budget is valid (tokens >= 0; with 0, a share in (0, 1]), else why not.
const char* budget_error(const SparseAttentionOptions& o);
// "N" (a key count, at least min_tokens) or "P%" (a share, 0 < P <= 100) into o's budget;
// false (o unchanged) for anything else.
bool parse_sparse_budget(std::string_view v, SparseAttentionOptions* o, int64_t min_tokens);

// Chooses the pages one query attends to.
//   q: [group][hd] the KV head's query heads (scaled, rotated, as attention uses them)
//   n_pages: logical pages holding positions 0..pos (the last one holds pos)
//   out: receives the selected logical page ids, ascending (at most n_pages); returns the
//   count. scratch: n_pages floats. Everything is selected when the budget covers n_pages.
int select_pages(const float* q, int group, int hd, const BlockSummaries& s, int64_t n_pages,
                 int64_t budget_pages, int recent_pages, int32_t* out, float* scratch);
// select_pages in two steps, so the scoring can be split across threads: pages [1, to) with
// to = pages_to_score(...) need a score (to = 1: none do); score_pages scores [from, to) into
// scores[from..to) (any cut gives the same floats); pick_pages selects from them.
int64_t pages_to_score(int64_t n_pages, int64_t budget_pages, int recent_pages);
void score_pages(const float* q, int group, int hd, const BlockSummaries& s, int64_t from,
                 int64_t to, float* scores);
int pick_pages(const float* scores, int64_t n_pages, int64_t budget_pages, int recent_pages,
               int32_t* out);

}  // namespace g4
