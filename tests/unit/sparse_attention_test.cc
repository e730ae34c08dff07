// Sparse attention routing: the block bound, the selection rules, and attention over the
// selection against dense attention on a paged cache.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/attention.h"
#include "kernels/sparse_attention.h"
#include "model/forward_common.h"
#include "runtime/kv_cache.h"

namespace g4 {

namespace {

// Summaries laid out as the cache does: block b of one KV head at base + b * stride.
struct Summaries {
  int hd;
  std::vector<float> mm;  // [n_blocks][2][hd]
  std::vector<int32_t> table;
  Summaries(int n_blocks, int hd_) : hd(hd_), mm(size_t(n_blocks) * 2 * size_t(hd_)) {
    for (int b = 0; b < n_blocks; ++b) table.push_back(b);
  }
  void set(int b, float lo, float hi) {
    for (int i = 0; i < hd; ++i) {
      mm[size_t(b) * 2 * size_t(hd) + size_t(i)] = lo;
      mm[size_t(b) * 2 * size_t(hd) + size_t(hd + i)] = hi;
    }
  }
  BlockSummaries view() const { return {mm.data(), table.data(), 2 * size_t(hd), 0, 0}; }
};

}  // namespace

TEST(SparseAttention, BoundHoldsForEveryKeyOfTheBlock) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  const int hd = 32, n = 64;
  std::vector<float> keys(size_t(n) * hd), mm(2 * hd);
  for (float& x : keys) x = nd(rng);
  for (int i = 0; i < hd; ++i) {
    mm[size_t(i)] = mm[size_t(hd + i)] = keys[size_t(i)];
    for (int j = 1; j < n; ++j) {
      mm[size_t(i)] = std::min(mm[size_t(i)], keys[size_t(j * hd + i)]);
      mm[size_t(hd + i)] = std::max(mm[size_t(hd + i)], keys[size_t(j * hd + i)]);
    }
  }
  for (int trial = 0; trial < 100; ++trial) {
    std::vector<float> q(hd);
    for (float& x : q) x = nd(rng);
    const float bound = block_bound(q.data(), mm.data(), hd);
    for (int j = 0; j < n; ++j) {
      float dot = 0;
      for (int i = 0; i < hd; ++i) dot += q[size_t(i)] * keys[size_t(j * hd + i)];
      EXPECT_LE(dot, bound + 1e-4f);
    }
  }
}

TEST(SparseAttention, SelectionKeepsSinkRecentAndBestBlocks) {
  const int hd = 4, n_blocks = 10;
  Summaries s(n_blocks, hd);
  for (int b = 0; b < n_blocks; ++b) s.set(b, -0.1f, 0.1f);
  s.set(3, 0, 5);  // the best candidate
  s.set(6, 0, 2);  // the second
  const std::vector<float> q = {1, 1, 1, 1};
  std::vector<int32_t> out(n_blocks);
  std::vector<float> scratch(n_blocks);
  // Budget 5 blocks: sink 0, recent 8 and the query's own 9, then the two best (3, 6).
  int n = select_pages(q.data(), 1, hd, s.view(), n_blocks, 5, 1, out.data(), scratch.data());
  EXPECT_EQ(std::vector<int32_t>(out.begin(), out.begin() + n),
            (std::vector<int32_t>{0, 3, 6, 8, 9}));
  // Budget 4: only the best candidate fits.
  n = select_pages(q.data(), 1, hd, s.view(), n_blocks, 4, 1, out.data(), scratch.data());
  EXPECT_EQ(std::vector<int32_t>(out.begin(), out.begin() + n), (std::vector<int32_t>{0, 3, 8, 9}));
  // Budget covering everything: every block, dense.
  n = select_pages(q.data(), 1, hd, s.view(), n_blocks, 10, 1, out.data(), scratch.data());
  EXPECT_EQ(n, n_blocks);
  // Ties go to the lower block: with 1-7 all equal, budget 5 takes 1 and 2.
  Summaries flat(n_blocks, hd);
  for (int b = 0; b < n_blocks; ++b) flat.set(b, 0, 1);
  n = select_pages(q.data(), 1, hd, flat.view(), n_blocks, 5, 1, out.data(), scratch.data());
  EXPECT_EQ(std::vector<int32_t>(out.begin(), out.begin() + n),
            (std::vector<int32_t>{0, 1, 2, 8, 9}));
}

TEST(SparseAttention, GroupSharesOneSelectionByItsMaximum) {
  // Head 0 wants block 2 (positive channel 0), head 1 wants block 5 (positive channel 1).
  const int hd = 2, n_blocks = 8;
  Summaries s(n_blocks, hd);
  for (int b = 0; b < n_blocks; ++b) s.set(b, -0.1f, 0.1f);
  s.mm[2 * 2 * hd + hd + 0] = 3;              // block 2: max of channel 0
  s.mm[5 * 2 * hd + hd + 1] = 4;              // block 5: max of channel 1
  const std::vector<float> q = {1, 0, 0, 1};  // [group 2][hd 2]
  std::vector<int32_t> out(n_blocks);
  std::vector<float> scratch(n_blocks);
  const int n = select_pages(q.data(), 2, hd, s.view(), n_blocks, 5, 1, out.data(), scratch.data());
  EXPECT_EQ(std::vector<int32_t>(out.begin(), out.begin() + n),
            (std::vector<int32_t>{0, 2, 5, 6, 7}));
}

// A paged cache with sparse routing: with a budget covering the context the output is
// dense attention bit for bit; with a small budget, a query aimed at one planted key still
// finds it, and the output stays close to dense.
TEST(SparseAttention, AttentionOverSelectionMatchesDense) {
  const int H = 4, Hkv = 2, hd = 16, bt = 16;
  const int64_t n_ctx = 512, pos = 300;
  KvCacheOptions o;
  o.n_ctx = n_ctx;
  o.max_chunk = n_ctx;
  o.block_tokens = bt;
  o.f32 = true;
  o.sparse.enabled = true;
  o.sparse.min_context = 0;
  o.sparse.page_tokens = bt / 2;
  o.sparse.recent_pages = 1;
  o.sparse.budget_tokens = 4 * bt / 2;  // sink + 1 best + recent + own pages
  KvCache kv({{Hkv, hd, 0}}, o);
  ASSERT_TRUE(kv.add_sequence(0).ok());
  ASSERT_TRUE(kv.reserve(0, pos + 1).ok());
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0, 0.3f);
  const int64_t needle = 123;
  std::vector<float> k(size_t(Hkv) * hd), v(size_t(Hkv) * hd);
  for (int64_t p = 0; p <= pos; ++p) {
    for (float& x : k) x = nd(rng);
    for (float& x : v) x = nd(rng);
    if (p == needle) {
      for (int i = 0; i < Hkv * hd; ++i) k[size_t(i)] = 2.0f, v[size_t(i)] = 1.0f;
    }
    kv.store(0, 0, p, k.data(), v.data());
  }
  kv.set_length(0, pos + 1);
  kv.summarize(0, 0, 0, pos + 1);
  std::vector<float> q(size_t(H) * hd, 1.0f);  // aims at the needle
  AttentionArgs args{H, Hkv, hd, n_ctx, 0, 0.f, true};
  std::vector<float> dense(size_t(H) * hd), sparse(size_t(H) * hd);
  std::vector<float> scores(attention_scratch_floats(args, n_ctx));
  const KvView w = kv.view(0, 0);
  AttentionArgs da = args;
  da.blocks = w.blocks;
  da.block_shift = w.block_shift;
  attend_group(da, q.data(), w.k, w.v, pos, 0, H, dense.data(), scores.data());
  for (int h0 = 0; h0 < H; h0 += 2)
    attend_cached(args, kv, 0, 0, q.data(), pos, true, h0, h0 + 2, sparse.data(), scores.data());
  for (size_t i = 0; i < dense.size(); ++i) EXPECT_NEAR(sparse[i], dense[i], 2e-3f) << i;
  // The needle dominates both: attention reads (almost) its value.
  EXPECT_NEAR(dense[0], 1.0f, 0.01f);

  // Dense below min_context and when the budget covers the context: bit-identical.
  KvCacheOptions o2 = o;
  o2.sparse.budget_tokens = n_ctx;
  KvCache kv2({{Hkv, hd, 0}}, o2);
  ASSERT_TRUE(kv2.add_sequence(0).ok());
  ASSERT_TRUE(kv2.reserve(0, pos + 1).ok());
  for (int64_t p = 0; p <= pos; ++p) {
    std::memcpy(kv2.k_row(0, 0, p), kv.k_row(0, 0, p), sizeof(float) * size_t(Hkv) * hd);
    std::memcpy(kv2.v_row(0, 0, p), kv.v_row(0, 0, p), sizeof(float) * size_t(Hkv) * hd);
  }
  kv2.set_length(0, pos + 1);
  kv2.summarize(0, 0, 0, pos + 1);
  attend_cached(args, kv2, 0, 0, q.data(), pos, true, 0, H, sparse.data(), scores.data());
  for (size_t i = 0; i < dense.size(); ++i) EXPECT_EQ(sparse[i], dense[i]) << i;
}

}  // namespace g4
