#include "kernels/sparse_attention.h"

#include <algorithm>

namespace g4 {

float block_bound(const float* q, const float* minmax, int hd) {
  const float* mn = minmax;
  const float* mx = minmax + hd;
  float s = 0;
  for (int i = 0; i < hd; ++i) s += std::max(q[i] * mn[i], q[i] * mx[i]);
  return s;
}

int select_pages(const float* q, int group, int hd, const BlockSummaries& s, int64_t n_blocks,
                 int64_t budget_blocks, int recent_blocks, int32_t* out, float* scratch) {
  // (In here a "block" is a selection page.)
  // Blocks [keep_from, n_blocks) are the recent ones and the query's own.
  const int64_t keep_from = std::max<int64_t>(1, n_blocks - 1 - recent_blocks);
  const int64_t forced = 1 + (n_blocks - keep_from);
  if (budget_blocks >= n_blocks || keep_from <= 1) {
    for (int64_t b = 0; b < n_blocks; ++b) out[b] = int32_t(b);
    return int(n_blocks);
  }
  const int64_t slots = std::max<int64_t>(0, budget_blocks - forced);
  for (int64_t b = 1; b < keep_from; ++b) {
    const float* mm = s.at(b);
    float best = block_bound(q, mm, hd);
    for (int h = 1; h < group; ++h)
      best = std::max(best, block_bound(q + size_t(h) * size_t(hd), mm, hd));
    scratch[b] = best;
  }
  // The `slots` best candidates, kept ordered by (score desc, block asc) as they stream by.
  auto before = [&](int32_t x, int32_t y) {
    return scratch[x] > scratch[y] || (scratch[x] == scratch[y] && x < y);
  };
  int32_t* cand = out + 1;
  int64_t taken = 0;
  for (int64_t b = 1; b < keep_from && slots > 0; ++b) {
    int64_t i;
    if (taken < slots) {
      i = taken++;
    } else if (before(int32_t(b), cand[taken - 1])) {
      i = taken - 1;
    } else {
      continue;
    }
    cand[i] = int32_t(b);
    for (; i > 0 && before(cand[i], cand[i - 1]); --i) std::swap(cand[i], cand[i - 1]);
  }
  std::sort(cand, cand + taken);
  int n = 0;
  out[n++] = 0;
  n += int(taken);
  for (int64_t b = keep_from; b < n_blocks; ++b) out[n++] = int32_t(b);
  return n;
}

}  // namespace g4
