// Sparse attention routing: the block bound, the selection rules, and attention over the
// selection against dense attention on a paged cache.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/fp16.h"
#include "kernels/attention.h"
#include "kernels/sparse_attention.h"
#include "model/forward_common.h"
#include "runtime/kv_cache.h"

namespace g4 {

namespace {

// Summaries laid out as the cache does: block b of one KV head at base + b * stride.
struct Summaries {
  int hd;
  std::vector<uint16_t> mm;  // [n_blocks][2][hd] f16
  std::vector<int32_t> table;
  Summaries(int n_blocks, int hd_) : hd(hd_), mm(size_t(n_blocks) * 2 * size_t(hd_)) {
    for (int b = 0; b < n_blocks; ++b) table.push_back(b);
  }
  void set(int b, float lo, float hi) {
    for (int i = 0; i < hd; ++i) {
      mm[size_t(b) * 2 * size_t(hd) + size_t(i)] = summary_lo(lo);
      mm[size_t(b) * 2 * size_t(hd) + size_t(hd + i)] = summary_hi(hi);
    }
  }
  BlockSummaries view() const { return {mm.data(), table.data(), 2 * size_t(hd), 0, 0}; }
};

// The small routed cache of the attention tests below: one global layer of 2 KV heads x 16
// channels, blocks of 16, pages of 8, budget sink + 1 best + recent + own pages; positions
// 0..kPos filled with N(0, 0.3) K/V rows (a planted key and value at `needle` if >= 0).
constexpr int kH = 4, kHkv = 2, kHd = 16, kBt = 16;
constexpr int64_t kCtx = 512, kPos = 300;

KvCacheOptions routed_options() {
  KvCacheOptions o;
  o.n_ctx = kCtx;
  o.max_chunk = kCtx;
  o.block_tokens = kBt;
  o.sparse.enabled = true;
  o.sparse.min_context = 0;
  o.sparse.page_tokens = kBt / 2;
  o.sparse.recent_pages = 1;
  o.sparse.budget_tokens = 4 * kBt / 2;
  return o;
}

// Returns the K rows as given (before the cache rounds them).
std::vector<std::vector<float>> fill_routed(KvCache& kv, std::mt19937& rng,
                                            std::normal_distribution<float>& nd,
                                            int64_t needle = -1) {
  EXPECT_TRUE(kv.add_sequence(0).ok());
  EXPECT_TRUE(kv.reserve(0, kPos + 1).ok());
  std::vector<float> k(size_t(kHkv) * kHd), v(size_t(kHkv) * kHd);
  std::vector<std::vector<float>> keys;
  for (int64_t p = 0; p <= kPos; ++p) {
    for (float& x : k) x = nd(rng);
    for (float& x : v) x = nd(rng);
    if (p == needle) std::fill(k.begin(), k.end(), 2.0f), std::fill(v.begin(), v.end(), 1.0f);
    kv.store(0, 0, p, k.data(), v.data());
    keys.push_back(k);
  }
  kv.set_length(0, kPos + 1);
  kv.summarize(0, 0, 0, kPos + 1);
  return keys;
}

}  // namespace

TEST(SparseAttention, BoundHoldsForEveryKeyOfTheBlock) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  const int hd = 32, n = 64;
  // f32 keys (as an f32 cache holds them): the f16 summary rounds outward, still a bound.
  std::vector<float> keys(size_t(n) * hd);
  std::vector<uint16_t> mm(2 * hd);
  for (float& x : keys) x = nd(rng);
  for (int i = 0; i < hd; ++i) {
    float lo = keys[size_t(i)], hi = lo;
    for (int j = 1; j < n; ++j) {
      lo = std::min(lo, keys[size_t(j * hd + i)]);
      hi = std::max(hi, keys[size_t(j * hd + i)]);
    }
    mm[size_t(i)] = summary_lo(lo);
    mm[size_t(hd + i)] = summary_hi(hi);
    ASSERT_LE(fp16_to_fp32(mm[size_t(i)]), lo);
    ASSERT_GE(fp16_to_fp32(mm[size_t(hd + i)]), hi);
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

// summary_lo / summary_hi: the largest f16 value <= x and the smallest >= x (every f16
// value maps to itself, -0 and +0 included), saturated at +-65504; NaN stays NaN.
TEST(SparseAttention, SummaryValuesRoundOutwardToF16) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float v = fp16_to_fp32(uint16_t(h));
    if (std::isnan(v)) {
      EXPECT_TRUE(std::isnan(fp16_to_fp32(summary_lo(v))));
      continue;
    }
    if (std::isinf(v)) {
      EXPECT_EQ(summary_lo(v), summary_hi(v));
      EXPECT_EQ(std::fabs(fp16_to_fp32(summary_lo(v))), 65504.f);
      continue;
    }
    ASSERT_EQ(summary_lo(v), h) << h;
    ASSERT_EQ(summary_hi(v), h) << h;
  }
  // Sorted finite f16 values; each x must land on its neighbours in this list.
  std::vector<float> all;
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float v = fp16_to_fp32(uint16_t(h));
    if (std::isfinite(v)) all.push_back(v);
  }
  std::sort(all.begin(), all.end());
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (int i = 0; i < 200000; ++i) {
    const float x = u(rng) * std::pow(2.f, float(int(rng() % 46) - 28));  // 2^-28 .. 2^17
    const float lo = fp16_to_fp32(summary_lo(x)), hi = fp16_to_fp32(summary_hi(x));
    if (x >= 65504.f || x <= -65504.f) {
      EXPECT_EQ(lo, hi);
      EXPECT_EQ(std::fabs(lo), 65504.f);
      continue;
    }
    const auto up = std::lower_bound(all.begin(), all.end(), x);  // first >= x
    ASSERT_EQ(hi, *up) << x;
    ASSERT_EQ(lo, *up == x ? x : *(up - 1)) << x;
  }
  EXPECT_EQ(fp16_to_fp32(summary_lo(1e9f)), 65504.f);  // saturated, not a bound
  EXPECT_EQ(fp16_to_fp32(summary_hi(-1e9f)), -65504.f);
}

// The budget: a key count rounded up to pages, or a share of the pages up to the query's
// own rounded up; parsed from "N" or "P%", anything else refused.
TEST(SparseAttention, BudgetIsACountOrAShare) {
  SparseAttentionOptions o;
  EXPECT_EQ(o.budget_tokens, 0);  // the default is a share: a quarter
  EXPECT_EQ(o.budget_share, 0.25);
  EXPECT_EQ(budget_pages(o, 4096, 8), 1024);
  EXPECT_EQ(budget_pages(o, 4097, 8), 1025);  // rounded up
  EXPECT_EQ(budget_pages(o, 1, 8), 1);
  EXPECT_STREQ(budget_error(o), "");
  ASSERT_TRUE(parse_sparse_budget("1000", &o, 256));
  EXPECT_EQ(o.budget_tokens, 1000);
  EXPECT_EQ(budget_pages(o, 4096, 8), 125);
  EXPECT_EQ(budget_pages(o, 4096, 32), 32);  // 1000 / 32 rounded up
  ASSERT_TRUE(parse_sparse_budget("12.5%", &o, 256));
  EXPECT_EQ(o.budget_tokens, 0);
  EXPECT_EQ(o.budget_share, 0.125);
  EXPECT_EQ(budget_pages(o, 100, 8), 13);
  ASSERT_TRUE(parse_sparse_budget("100%", &o, 256));
  EXPECT_EQ(budget_pages(o, 100, 8), 100);
  const SparseAttentionOptions before = o;
  for (const char* bad : {"", "%", "0%", "-5%", "101%", "1e9%", "nan%", "12x", "100", "-300",
                          " 300", "300 ", "25 %"}) {
    EXPECT_FALSE(parse_sparse_budget(bad, &o, 256)) << bad;
    EXPECT_EQ(o.budget_tokens, before.budget_tokens) << bad;
    EXPECT_EQ(o.budget_share, before.budget_share) << bad;
  }
  EXPECT_TRUE(parse_sparse_budget("100", &o, 1));  // eval --compare's budget=100
  o.budget_tokens = 0;
  o.budget_share = 0;
  EXPECT_STRNE(budget_error(o), "");
  o.budget_share = 1.5;
  EXPECT_STRNE(budget_error(o), "");
  o.budget_tokens = -1;
  EXPECT_STRNE(budget_error(o), "");
}

// A share budget routes each query to ceil(share x its pages): a quarter of 38 pages of 8
// at position 300 is 10 pages; the cache refuses a share outside (0, 1].
TEST(SparseAttention, ShareBudgetFollowsTheQueryPosition) {
  KvCacheOptions o = routed_options();
  o.sparse.budget_tokens = 0;
  o.sparse.budget_share = 0.25;
  KvCache kv({{kHkv, kHd, 0}}, o);
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0, 0.3f);
  fill_routed(kv, rng, nd);
  std::vector<float> q(size_t(kH) * kHd, 0.5f);
  AttentionArgs args{kH, kHkv, kHd, kCtx, 0, 0.f};
  for (int64_t pos : {int64_t(100), kPos}) {
    const PageScoring ps = page_scoring(args, kv, 0, 0, q.data(), pos, 1, true, 0);
    ASSERT_TRUE(ps.routed) << pos;
    EXPECT_EQ(ps.n_pages, pos / 8 + 1);
    EXPECT_EQ(ps.budget, (ps.n_pages + 3) / 4) << pos;
  }
  SparseAttentionOptions bad = o.sparse;
  bad.budget_share = 0;
  EXPECT_FALSE(kv.set_routing(0, bad).ok());
  bad.budget_share = 1.01;
  EXPECT_FALSE(kv.set_routing(0, bad).ok());
  bad.budget_share = 1.0;
  EXPECT_TRUE(kv.set_routing(0, bad).ok());
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
  s.mm[2 * 2 * hd + hd + 0] = summary_hi(3);  // block 2: max of channel 0
  s.mm[5 * 2 * hd + hd + 1] = summary_hi(4);  // block 5: max of channel 1
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
  const int H = kH, Hkv = kHkv, hd = kHd, bt = kBt;
  const int64_t n_ctx = kCtx, pos = kPos;
  KvCacheOptions o = routed_options();
  o.f32 = true;
  KvCache kv({{Hkv, hd, 0}}, o);
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0, 0.3f);
  fill_routed(kv, rng, nd, /*needle=*/123);
  std::vector<float> q(size_t(H) * hd, 1.0f);  // aims at the needle
  AttentionArgs args{H, Hkv, hd, n_ctx, 0, 0.f, true};
  std::vector<float> dense(size_t(H) * hd), sparse(size_t(H) * hd);
  std::vector<float> scores(attention_split_scratch_floats(args, 1, n_ctx));
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

  // A sequence's own routing (KvCache::set_routing) replaces the cache's: switched off, the
  // small-budget cache attends densely (bit for bit); switched back, it routes again (the
  // output moves off dense); a prompt step is never routed unless prompts are.
  // (A random query: the needle's query reads almost only the needle either way.)
  for (float& x : q) x = nd(rng);
  attend_group(da, q.data(), w.k, w.v, pos, 0, H, dense.data(), scores.data());
  std::vector<float> out(size_t(H) * hd), routed(size_t(H) * hd);
  attend_cached(args, kv, 0, 0, q.data(), pos, true, 0, H, routed.data(), scores.data());
  EXPECT_NE(routed, dense);
  SparseAttentionOptions off = o.sparse;
  off.enabled = false;
  ASSERT_TRUE(kv.set_routing(0, off).ok());
  attend_cached(args, kv, 0, 0, q.data(), pos, true, 0, H, out.data(), scores.data());
  EXPECT_EQ(out, dense);
  ASSERT_TRUE(kv.set_routing(0, o.sparse).ok());
  attend_cached(args, kv, 0, 0, q.data(), pos, true, 0, H, out.data(), scores.data());
  EXPECT_EQ(out, routed);
  attend_cached(args, kv, 0, 0, q.data(), pos, false, 0, H, out.data(), scores.data());
  EXPECT_EQ(out, dense);
  SparseAttentionOptions bad = o.sparse;
  bad.page_tokens = bt;  // the summaries' page size is the cache's
  EXPECT_FALSE(kv.set_routing(0, bad).ok());
  EXPECT_FALSE(kv.set_routing(7, o.sparse).ok());  // no such sequence
}

// The page oracle (--sparse-oracle, a diagnostic) scores a page by the exact best q.k over
// its keys and the group's heads, read from the cache (f16 here, as the default cache), and
// the routing then keeps the page holding the best key even where the bound ranks it low.
TEST(SparseAttention, OracleScoresAreTheExactBestProduct) {
  const int H = kH, Hkv = kHkv, hd = kHd, bt = kBt;
  const int64_t n_ctx = kCtx, pos = kPos;
  KvCacheOptions o = routed_options();
  o.sparse.oracle_rank = true;
  KvCache kv({{Hkv, hd, 0}}, o);
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0, 0.3f);
  // [pos][Hkv * hd] as given (the f16 cache rounds them: below)
  const std::vector<std::vector<float>> keys = fill_routed(kv, rng, nd);
  std::vector<float> q(size_t(H) * hd);
  for (float& x : q) x = nd(rng);
  AttentionArgs args{H, Hkv, hd, n_ctx, 0, 0.f};
  const int group = H / Hkv;
  for (int kvh = 0; kvh < Hkv; ++kvh) {
    const PageScoring ps = page_scoring(args, kv, 0, 0, q.data(), pos, 1, true, kvh);
    ASSERT_TRUE(ps.routed);
    ASSERT_TRUE(ps.oracle);
    std::vector<float> got(size_t(ps.n_pages), 0.f);
    score_page_range(args, ps, 1, ps.to, got.data());
    const int64_t pt = bt / 2;
    for (int64_t pg = 1; pg < ps.to; ++pg) {
      float best = -INFINITY;
      for (int64_t p = pg * pt; p < (pg + 1) * pt; ++p) {
        for (int h = 0; h < group; ++h) {
          const float* qh = q.data() + size_t(kvh * group + h) * hd;
          float dot = 0.f;
          for (int i = 0; i < hd; ++i)
            dot += qh[i] * fp16_to_fp32(fp32_to_fp16(keys[size_t(p)][size_t(kvh * hd + i)]));
          best = std::max(best, dot);
        }
      }
      EXPECT_EQ(got[size_t(pg)], best) << "kvh " << kvh << " page " << pg;
    }
    // Off, the same unit scores with the bounds (each at least its page's best product).
    SparseAttentionOptions bounds = o.sparse;
    bounds.oracle_rank = false;
    ASSERT_TRUE(kv.set_routing(0, bounds).ok());
    const PageScoring pb = page_scoring(args, kv, 0, 0, q.data(), pos, 1, true, kvh);
    EXPECT_FALSE(pb.oracle);
    std::vector<float> bound(size_t(pb.n_pages), 0.f);
    score_page_range(args, pb, 1, pb.to, bound.data());
    for (int64_t pg = 1; pg < pb.to; ++pg)
      EXPECT_GE(bound[size_t(pg)] + 1e-4f, got[size_t(pg)]) << pg;
    ASSERT_TRUE(kv.set_routing(0, o.sparse).ok());
  }
}

// The SIMD page scoring (AVX-512 pairs of heads, AVX2) gives the portable path's floats bit
// for bit: head dims 256 and 512 and one with a tail, groups of 1 to 9 heads.
TEST(SparseAttention, SimdBoundsAreTheScalarBoundsBitForBit) {
  std::mt19937 rng(17);
  std::normal_distribution<float> nd;
  for (int hd : {256, 512, 44}) {
    for (int group = 1; group <= 9; ++group) {
      std::vector<float> q(size_t(group) * size_t(hd));
      std::vector<uint16_t> mm(2 * size_t(hd));
      for (int trial = 0; trial < 20; ++trial) {
        for (float& x : q) x = nd(rng);
        for (int i = 0; i < hd; ++i) {
          const float a = nd(rng), b = nd(rng);
          mm[size_t(i)] = summary_lo(std::min(a, b));
          mm[size_t(hd + i)] = summary_hi(std::max(a, b));
        }
        const float simd = group_page_bound(q.data(), group, hd, mm.data());
        const float ref = group_page_bound_scalar(q.data(), group, hd, mm.data());
        ASSERT_EQ(std::memcmp(&simd, &ref, 4), 0)
            << hd << " " << group << ": " << simd << " " << ref;
        float best = block_bound(q.data(), mm.data(), hd);
        for (int h = 1; h < group; ++h)
          best = std::max(best, block_bound(q.data() + size_t(h) * size_t(hd), mm.data(), hd));
        ASSERT_EQ(ref, best);
      }
    }
  }
}

// score_pages gives each page the portable bound's float, for any range: groups of 1 to 9
// heads, block boundaries (4 pages per block, blocks stored out of order), nothing outside it.
TEST(SparseAttention, ScoredRangesAreTheScalarBoundsBitForBit) {
  std::mt19937 rng(29);
  std::normal_distribution<float> nd;
  for (int hd : {256, 44}) {
    for (int group = 1; group <= 9; ++group) {
      const int per_block = 4, n_pages = 23, n_blocks = (n_pages + per_block - 1) / per_block;
      std::vector<uint16_t> mm(size_t(n_blocks) * per_block * 2 * size_t(hd));
      for (size_t i = 0; i < mm.size(); i += 2 * size_t(hd))
        for (int c = 0; c < hd; ++c) {
          const float a = nd(rng), b = nd(rng);
          mm[i + size_t(c)] = summary_lo(std::min(a, b));
          mm[i + size_t(hd + c)] = summary_hi(std::max(a, b));
        }
      std::vector<int32_t> table(static_cast<size_t>(n_blocks));
      for (int b = 0; b < n_blocks; ++b) table[size_t(b)] = (b * 3) % n_blocks;  // 3 is coprime
      BlockSummaries s{mm.data(), table.data(), size_t(per_block) * 2 * size_t(hd), 2 * size_t(hd),
                       2};
      std::vector<float> q(size_t(group) * size_t(hd));
      for (float& x : q) x = nd(rng);
      for (int64_t from : {0, 1, 3}) {
        for (int64_t to : {int64_t(4), int64_t(8), int64_t(9), int64_t(n_pages)}) {
          std::vector<float> got(static_cast<size_t>(n_pages), -1.f);
          score_pages(q.data(), group, hd, s, from, to, got.data());
          for (int64_t p = from; p < to; ++p) {
            const float want = group_page_bound_scalar(q.data(), group, hd, s.at(p));
            ASSERT_EQ(std::memcmp(&got[size_t(p)], &want, 4), 0)
                << hd << " " << group << " [" << from << ", " << to << ") page " << p;
          }
          for (int64_t p = to; p < n_pages; ++p) ASSERT_EQ(got[size_t(p)], -1.f);  // untouched
        }
      }
    }
  }
}

// select_pages against a plain reference: score every candidate with the scalar bound, sort
// by (score desc, page asc), keep the best budget - forced, then the sink and the recent
// pages. Random summaries, many duplicate scores (quantised values) to exercise the ties.
// A NaN score (a NaN query) ranks below every number and ties by page, so the selection is
// still a well-defined set (the selection algorithm needs a total order).
TEST(SparseAttention, NanScoresRankLast) {
  const int64_t n = 12;
  std::vector<float> sc(static_cast<size_t>(n), 1.f);
  sc[2] = NAN;
  sc[3] = 5.f;
  sc[4] = NAN;
  sc[5] = -INFINITY;
  std::vector<int32_t> out(static_cast<size_t>(n));
  // recent 1: pages 10 and 11 forced with 0; slots = budget - 3.
  int k = pick_pages(sc.data(), n, 5, 1, out.data());
  EXPECT_EQ(std::vector<int32_t>(out.begin(), out.begin() + k),
            (std::vector<int32_t>{0, 1, 3, 10, 11}));
  // 8 slots of 9: NaN ties with -inf, by page, so page 5 (-inf) is the one left out.
  k = pick_pages(sc.data(), n, 11, 1, out.data());
  EXPECT_EQ(std::vector<int32_t>(out.begin(), out.begin() + k),
            (std::vector<int32_t>{0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11}));
  std::fill(sc.begin(), sc.end(), NAN);
  k = pick_pages(sc.data(), n, 6, 1, out.data());
  EXPECT_EQ(std::vector<int32_t>(out.begin(), out.begin() + k),
            (std::vector<int32_t>{0, 1, 2, 3, 10, 11}));
}

TEST(SparseAttention, SelectionEqualsSortedReference) {
  std::mt19937 rng(23);
  std::uniform_int_distribution<int> small(-3, 3);
  const int hd = 16, group = 2, per_block = 4;
  for (int trial = 0; trial < 200; ++trial) {
    const int n_pages = 3 + int(rng() % 120);
    const int64_t budget = 1 + int64_t(rng() % (n_pages + 2));
    const int recent = int(rng() % 3);
    const int n_blocks = (n_pages + per_block - 1) / per_block;
    std::vector<uint16_t> mm(size_t(n_blocks) * per_block * 2 * hd);
    for (size_t i = 0; i < mm.size(); i += 2 * hd) {
      for (int c = 0; c < hd; ++c) {
        const float a = float(small(rng)), b = float(small(rng));
        mm[i + size_t(c)] = summary_lo(std::min(a, b));
        mm[i + size_t(hd + c)] = summary_hi(std::max(a, b));
      }
    }
    std::vector<int32_t> table(static_cast<size_t>(n_blocks));
    for (int b = 0; b < n_blocks; ++b) table[size_t(b)] = n_blocks - 1 - b;  // shuffled storage
    BlockSummaries s{mm.data(), table.data(), size_t(per_block) * 2 * hd, 2 * size_t(hd), 2};
    std::vector<float> q(size_t(group) * hd);
    for (float& x : q) x = float(small(rng));
    std::vector<int32_t> out(static_cast<size_t>(n_pages));
    std::vector<float> scratch(static_cast<size_t>(n_pages));
    const int n =
        select_pages(q.data(), group, hd, s, n_pages, budget, recent, out.data(), scratch.data());
    // Reference.
    std::vector<int32_t> want;
    const int64_t keep_from = std::max<int64_t>(1, n_pages - 1 - recent);
    if (budget >= n_pages || keep_from <= 1) {
      for (int p = 0; p < n_pages; ++p) want.push_back(p);
    } else {
      std::vector<std::pair<float, int32_t>> sc;
      for (int32_t p = 1; p < keep_from; ++p)
        sc.push_back({-group_page_bound_scalar(q.data(), group, hd, s.at(p)), p});
      std::sort(sc.begin(), sc.end());
      const int64_t slots = std::max<int64_t>(0, budget - 1 - (n_pages - keep_from));
      want.push_back(0);
      std::vector<int32_t> best;
      for (int64_t i = 0; i < std::min<int64_t>(slots, int64_t(sc.size())); ++i)
        best.push_back(sc[size_t(i)].second);
      std::sort(best.begin(), best.end());
      want.insert(want.end(), best.begin(), best.end());
      for (int64_t p = keep_from; p < n_pages; ++p) want.push_back(int32_t(p));
    }
    ASSERT_EQ(std::vector<int32_t>(out.begin(), out.begin() + n), want)
        << "trial " << trial << " pages " << n_pages << " budget " << budget;
  }
}

}  // namespace g4
