// `g4 perplexity --kld BASE --kld-last N` (eval/kld.h): scoring only the last N positions,
// both engines stepped side by side, gives the same per-position KL as the all-positions
// path on those positions. Tiny random-weight Gemma 3 (tests/golden/tiny), a 62-token chunk,
// the model routed by sparse attention with small pages so its logits really differ.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "eval/kld.h"
#include "g4/engine.h"

namespace g4 {

namespace {

std::unique_ptr<Engine> load(const std::string& path, bool sparse, const std::string& kv) {
  EngineOptions o;
  o.model_path = path;
  o.n_threads = 2;
  o.n_ctx = 64;
  o.max_chunk = 16;  // the unscored part in several prompt steps
  o.kv_type = kv;
  if (sparse) {
    o.sparse.enabled = true;
    o.sparse.page_tokens = 4;
    o.sparse.budget_tokens = 8;
    o.sparse.min_context = 8;
    o.sparse.recent_pages = 1;
    o.sparse.prefill = true;  // the all-positions path reads the chunk as one prompt
  }
  auto e = Engine::load(o);
  EXPECT_TRUE(e.ok()) << e.error();
  return e.ok() ? std::move(e).value() : nullptr;
}

std::vector<int32_t> chunk_ids(int vocab) {
  std::vector<int32_t> ids{2};
  uint64_t s = 12345;
  while (ids.size() < 62) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    ids.push_back(int32_t((s >> 33) % uint64_t(vocab)));
  }
  return ids;
}

}  // namespace

TEST(KldLast, SamePerPositionKlAsAllPositions) {
  const std::string dir = std::string(G4_SOURCE_DIR) + "/tests/golden/tiny/";
  for (const char* kv : {"f16", "f32"}) {
    for (bool sparse : {true, false}) {
      if (!sparse && std::string(kv) == "f16") continue;  // the base against itself
      auto base = load(dir + "tiny_4b_like.gguf", false, "f16");
      auto model = load(dir + "tiny_4b_like.gguf", sparse, kv);
      ASSERT_TRUE(base && model);
      const auto ids = chunk_ids(model->model().config().vocab_size);
      auto all = kl_divergence_chunks(*base, *model, {ids}, KldOptions{});
      ASSERT_TRUE(all.ok()) << all.error();
      ASSERT_EQ(all.value().kl.size(), ids.size() - 1);
      double mean_tail = 0;
      for (int64_t step : {int64_t(1), int64_t(5), int64_t(16)}) {
        KldOptions o;
        o.last = 20;
        o.step = step;
        auto tail = kl_divergence_chunks(*base, *model, {ids}, o);
        ASSERT_TRUE(tail.ok()) << tail.error();
        ASSERT_EQ(tail.value().kl.size(), 20u);
        mean_tail = tail.value().mean_kl;
        const size_t off = all.value().kl.size() - 20;
        for (size_t i = 0; i < 20; ++i) {
          const double want = all.value().kl[off + i];
          EXPECT_NEAR(tail.value().kl[i], want, 1e-9 + 1e-6 * want)
              << kv << (sparse ? " sparse" : "") << ", step " << step << ", position " << off + i;
        }
      }
      // The comparison means something: the model's logits differ from the base's.
      EXPECT_GT(mean_tail, sparse ? 1e-4 : 1e-12) << kv << (sparse ? " sparse" : "");
      std::printf("kv %s%s: mean KL over the last 20 positions %.3g\n", kv, sparse ? " sparse" : "",
                  mean_tail);
    }
  }
}

// Eval's shared-prefill compare (`g4 eval niah|ruler --compare attn=dense:attn=sparse`): one
// session answering under two routings, switched between answers, gives the tokens of two
// separate engines. Prompts are read densely under both (also when a prompt ends in a
// one-token step), so routing changes only the decoding steps.
TEST(SparseRouting, SwitchedPerSessionEqualsSeparateEngines) {
  const std::string path = std::string(G4_SOURCE_DIR) + "/tests/golden/tiny/tiny_4b_like.gguf";
  auto dense = load(path, false, "f16");
  auto sparse = load(path, true, "f16");
  ASSERT_TRUE(dense && sparse);
  SparseAttentionOptions routed = sparse->options().sparse;
  routed.prefill = false;
  routed.budget_tokens = 4;  // one page besides the sink and the query's own: answers change
  routed.recent_pages = 0;
  ASSERT_TRUE(sparse->options().sparse.prefill);  // load() routes prompts: not shareable
  EngineOptions eo = sparse->options();
  eo.sparse.prefill = false;
  auto shared_e = Engine::load(eo);
  eo.sparse = routed;
  auto sparse_dec = Engine::load(eo);
  ASSERT_TRUE(shared_e.ok() && sparse_dec.ok());
  const auto ids = chunk_ids(dense->model().config().vocab_size);
  GenerateOptions g;
  // Sampled with a fixed seed: the draws follow the distribution, not only its argmax.
  g.sampling = SamplingParams{1.0f, 0, 1.0f, 0.0f, 1.0f, 0, 0, 64, 7};
  g.max_tokens = 8;  // the sliding rings still hold the window before the prompt's end
  g.stop_at_eog = false;
  // 33 prompt tokens: with max_chunk 16 the prompt ends in a one-token step.
  for (size_t len : {size_t(33), size_t(40)}) {
    const std::vector<int32_t> prompt(ids.begin(), ids.begin() + long(len));
    auto want_dense = Session(*dense).generate(prompt, g);
    auto want_sparse = Session(*sparse_dec.value()).generate(prompt, g);
    ASSERT_TRUE(want_dense.ok() && want_sparse.ok());
    Session s(*shared_e.value());
    SparseAttentionOptions off = routed;
    off.enabled = false;
    for (int round = 0; round < 2; ++round) {
      ASSERT_TRUE(s.set_routing(off).ok());
      auto a = s.generate(prompt, g);
      ASSERT_TRUE(s.set_routing(routed).ok());
      auto b = s.generate(prompt, g);
      ASSERT_TRUE(a.ok() && b.ok());
      EXPECT_EQ(a.value().tokens, want_dense.value().tokens) << len << " round " << round;
      EXPECT_EQ(b.value().tokens, want_sparse.value().tokens) << len << " round " << round;
      if (round == 1) EXPECT_EQ(b.value().n_cached_tokens, int(len) - 1);  // prefill shared
    }
  }
  // (That the switch really routes is SparseAttention.AttentionOverSelectionMatchesDense's
  // check: a random tiny model's tokens hardly move under routing.)
  // Routing needs summaries: a dense engine's session cannot switch it on.
  Session d(*dense);
  EXPECT_FALSE(d.set_routing(routed).ok());
  SparseAttentionOptions other_page = routed;
  other_page.page_tokens = 8;
  Session t(*shared_e.value());
  EXPECT_FALSE(t.set_routing(other_page).ok());
}

// The near-tie split of top-1 agreement: positions where the base's best logit leads its
// second by >= 1 nat, agreement among them, and the base's median lead where the argmaxes
// differ, recounted here from both engines' full logits (a sparse model, so some differ).
TEST(KldLast, TopOneAgreementSplitByTheBaseLead) {
  const std::string dir = std::string(G4_SOURCE_DIR) + "/tests/golden/tiny/";
  auto base = load(dir + "tiny_4b_like.gguf", false, "f16");
  auto model = load(dir + "tiny_4b_like.gguf", true, "f16");
  ASSERT_TRUE(base && model);
  const auto ids = chunk_ids(model->model().config().vocab_size);
  const int vocab = model->model().config().vocab_size;
  auto r = kl_divergence_chunks(*base, *model, {ids}, KldOptions{});
  ASSERT_TRUE(r.ok()) << r.error();
  Session sb(*base), sm(*model);
  auto lb = sb.logits_all(ids);
  auto lm = sm.logits_all(ids);
  ASSERT_TRUE(lb.ok() && lm.ok());
  size_t clear = 0, clear_agree = 0, agree = 0;
  std::vector<double> miss;
  for (size_t i = 0; i + 1 < ids.size(); ++i) {
    const float* b = lb.value().data() + i * size_t(vocab);
    const float* m = lm.value().data() + i * size_t(vocab);
    std::vector<float> sorted(b, b + vocab);
    std::sort(sorted.begin(), sorted.end(), std::greater<float>());
    const double lead = double(sorted[0]) - double(sorted[1]);
    const bool same = std::max_element(b, b + vocab) - b == std::max_element(m, m + vocab) - m;
    agree += same;
    if (lead >= 1.0) {
      ++clear;
      clear_agree += same;
    }
    if (!same) miss.push_back(lead);
  }
  ASSERT_FALSE(miss.empty());  // the split is exercised: some argmaxes differ
  EXPECT_EQ(r.value().top1_agreement, double(agree) / double(ids.size() - 1));
  EXPECT_EQ(r.value().clear_positions, clear);
  EXPECT_EQ(r.value().top1_agreement_clear, double(clear_agree) / double(clear));
  std::sort(miss.begin(), miss.end());
  EXPECT_NEAR(r.value().miss_lead_median, miss[miss.size() / 2], 1e-5);
  // Against itself: every position agrees.
  auto self = kl_divergence_chunks(*base, *base, {ids}, KldOptions{});
  ASSERT_TRUE(self.ok());
  EXPECT_EQ(self.value().top1_agreement_clear, 1.0);
  EXPECT_EQ(self.value().miss_lead_median, 0.0);
}

TEST(KldLast, RejectsBadOptions) {
  const std::string dir = std::string(G4_SOURCE_DIR) + "/tests/golden/tiny/";
  auto base = load(dir + "tiny_4b_like.gguf", false, "f16");
  ASSERT_TRUE(base);
  KldOptions o;
  o.last = 4;
  o.step = 0;
  EXPECT_FALSE(kl_divergence_chunks(*base, *base, {{2, 3, 4}}, o).ok());
  EXPECT_FALSE(kl_divergence_chunks(*base, *base, {std::vector<int32_t>(65, 3)}, {}).ok());
  EXPECT_FALSE(kl_divergence_chunks(*base, *base, {{2}}, {}).ok());
}

}  // namespace g4
