// Tiny random-weight Gemma 3 checkpoints vs an independent NumPy float64 forward
// (scripts/gen_tiny_gemma3.py): linear x8 RoPE on global layers, the 27B query scale, GQA
// groups, F32 and F16 weights, prompts longer than the sliding window, chunked prefill.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "g4/engine.h"
#include "model/forward_common.h"

namespace g4 {

class TinyGemma3 : public ::testing::TestWithParam<const char*> {};

TEST_P(TinyGemma3, MatchesNumpyReference) {
  const std::string dir = std::string(G4_SOURCE_DIR) + "/tests/golden/tiny/";
  std::ifstream in(dir + GetParam() + ".json");
  ASSERT_TRUE(in.good());
  const auto fx = nlohmann::json::parse(in);
  for (int64_t chunk : {int64_t(512), int64_t(4)}) {  // whole prompt, then 4-token prefill steps
    EngineOptions o;
    o.model_path = dir + fx["file"].get<std::string>();
    o.n_threads = 2;
    o.n_ctx = 64;
    o.max_chunk = chunk;
    auto e = Engine::load(o);
    ASSERT_TRUE(e.ok()) << e.error();
    const int vocab = e.value()->model().config().vocab_size;
    EXPECT_FLOAT_EQ(e.value()->model().config().query_scale, fx["query_scale"].get<float>());
    double max_diff = 0, max_logit = 0;
    for (const auto& p : fx["prompts"]) {
      Session s(*e.value());
      auto lg = s.logits_all(p["ids"].get<std::vector<int32_t>>());
      ASSERT_TRUE(lg.ok()) << lg.error();
      const auto rows = p["rows"].get<std::vector<size_t>>();
      for (size_t k = 0; k < rows.size(); ++k) {
        for (int v = 0; v < vocab; ++v) {
          const double want = p["logits"][k][size_t(v)].get<double>();
          max_logit = std::max(max_logit, std::fabs(want));
          max_diff = std::max(
              max_diff, std::fabs(double(lg.value()[rows[k] * size_t(vocab) + size_t(v)]) - want));
        }
      }
    }
    std::printf("%s (chunk %lld): max |logit diff| vs numpy %.2e\n", GetParam(), (long long)chunk,
                max_diff);
    // The reference rounds K/V to fp16 like the engine, from float64 instead of float32
    // values: where the two straddle an fp16 rounding boundary they differ by one fp16 ulp
    // (2^-11 relative), which after 7-62 layers shows up as ~5e-5 of the logit scale.
    EXPECT_LE(max_diff, 1e-4 * max_logit);
  }
}

// Thread count changes how rows and attention heads are split into jobs (a 1-token step of
// 4 heads over 1 KV head: one job of 4 heads, two of 2, or four of 1), never a value.
TEST_P(TinyGemma3, SameLogitsForAnyThreadCount) {
  const std::string dir = std::string(G4_SOURCE_DIR) + "/tests/golden/tiny/";
  std::ifstream in(dir + GetParam() + ".json");
  ASSERT_TRUE(in.good());
  const auto fx = nlohmann::json::parse(in);
  const auto ids = fx["prompts"][0]["ids"].get<std::vector<int32_t>>();
  std::vector<float> first;
  for (int threads : {1, 2, 3}) {
    for (int64_t chunk : {int64_t(512), int64_t(1)}) {
      EngineOptions o;
      o.model_path = dir + fx["file"].get<std::string>();
      o.n_threads = threads;
      o.n_ctx = 64;
      o.max_chunk = chunk;
      auto e = Engine::load(o);
      ASSERT_TRUE(e.ok()) << e.error();
      Session s(*e.value());
      auto lg = s.logits_all(ids);
      ASSERT_TRUE(lg.ok()) << lg.error();
      if (first.empty()) first = lg.value();
      ASSERT_EQ(lg.value().size(), first.size());
      for (size_t i = 0; i < first.size(); ++i)
        ASSERT_EQ(lg.value()[i], first[i]) << threads << " threads, chunk " << chunk << ", " << i;
    }
  }
}

TEST(AttentionJobs, HeadsPerJobKeepThreadsEven) {
  EXPECT_EQ(attention_heads_per_job(1, 4, 1, 2), 2);    // 270M decode: two jobs of two heads
  EXPECT_EQ(attention_heads_per_job(1, 4, 1, 1), 4);    // one thread: the whole group
  EXPECT_EQ(attention_heads_per_job(1, 4, 1, 3), 1);    // 3 threads: four jobs of one head
  EXPECT_EQ(attention_heads_per_job(512, 4, 1, 2), 4);  // prefill: whole groups
  EXPECT_EQ(attention_heads_per_job(1, 8, 2, 2), 4);    // 2 KV heads: one job each
  EXPECT_EQ(attention_heads_per_job(3, 4, 1, 2), 2);    // 3 tokens: six jobs, not three
}

INSTANTIATE_TEST_SUITE_P(Shapes, TinyGemma3,
                         ::testing::Values("tiny_4b_like", "tiny_27b_like", "tiny_1b_like"));

}  // namespace g4
