// Mixture-of-experts statistics and weight traffic on the tiny Gemma 4 MoE checkpoints:
//  - router choices (per-layer, per-expert token counts) equal transformers' own router's
//    (scripts/gen_tiny_gemma4_routes.py);
//  - a 512-token prefill step streams each chosen expert's matrices exactly once per layer and
//    a decode step touches only the token's k experts (MoeCounters' read counter);
//  - the one-token decode path gives the same logits, bit for bit, as the grouped path;
//  - the load-balance summary on worked numbers.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "g4/engine.h"
#include "io/gguf.h"
#include "model/moe.h"

namespace g4 {

namespace {

std::string fixture_dir() {
  return std::string(G4_SOURCE_DIR) + "/tests/golden/tiny_gemma4/";
}

nlohmann::json load_json(const std::string& name) {
  std::ifstream in(fixture_dir() + name);
  EXPECT_TRUE(in.good()) << name;
  return in.good() ? nlohmann::json::parse(in) : nlohmann::json();
}

EngineOptions options(const std::string& gguf, int64_t chunk, bool exact) {
  EngineOptions o;
  o.model_path = fixture_dir() + gguf;
  o.n_threads = 2;
  o.n_ctx = 256;
  o.max_chunk = chunk;
  o.exact = exact;
  o.kv_f32 = exact;
  o.embed_scale = EmbedScale::kExact;  // as the float32 reference computes it
  return o;
}

using Table = std::vector<std::vector<uint64_t>>;

Table minus(const Table& a, const Table& b) {
  Table d = a;
  for (size_t l = 0; l < a.size(); ++l)
    for (size_t e = 0; e < a[l].size(); ++e) d[l][e] = a[l][e] - b[l][e];
  return d;
}

// Pseudo-random token ids in [4, vocab) (fixed LCG: the test is about counts, not values).
std::vector<int32_t> token_ids(size_t n, int vocab) {
  std::vector<int32_t> ids{2};
  uint64_t x = 12345;
  while (ids.size() < n) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    ids.push_back(int32_t(4 + (x >> 33) % uint64_t(vocab - 4)));
  }
  return ids;
}

}  // namespace

// The fixture's routes come from transformers' Gemma4TextRouter on the same weights (hooked
// torch.topk indices). Every prompt's smallest gap between the k-th and (k+1)-th router
// probability is >= 20x the float32 router's own error (measured against float64 by the
// script), so a float32 engine summing in another order must pick the same experts: counts
// are compared exactly. Exact numerics and f32 KV: the function transformers computes.
TEST(MoeStats, RoutingMatchesTransformers) {
  const nlohmann::json ref = load_json("tiny_26b_like_routes.json");
  ASSERT_FALSE(ref.is_null());
  auto e = Engine::load(options(ref["file"].get<std::string>(), 64, true));
  ASSERT_TRUE(e.ok()) << e.error();
  const Model& m = e.value()->model();
  ASSERT_EQ(m.config().n_experts, ref["n_experts"].get<int>());
  ASSERT_EQ(m.config().n_experts_used, ref["n_experts_used"].get<int>());
  for (const auto& p : ref["prompts"]) {
    const auto ids = p["ids"].get<std::vector<int32_t>>();
    const Table before = m.expert_load();
    Session s(*e.value());
    ASSERT_TRUE(s.logits_all(ids).ok());
    const Table got = minus(m.expert_load(), before);
    ASSERT_EQ(got.size(), p["layers"].size());
    for (size_t l = 0; l < got.size(); ++l) {
      EXPECT_EQ(got[l], p["layers"][l]["counts"].get<std::vector<uint64_t>>())
          << "prompt of " << ids.size() << " tokens, layer " << l;
      uint64_t sum = 0;
      for (uint64_t n : got[l]) sum += n;
      EXPECT_EQ(sum, ids.size() * size_t(m.config().n_experts_used));
    }
  }
}

// The issue's check: "prefill with a 512-token prompt reads each expert's weights once per
// layer". One 512-token step through the brief's MoE shape (8 experts, top-2): every expert
// that received tokens had each of its matrices streamed exactly once in every layer, the
// others not at all. Then one decode step: only the token's k experts are read, once each.
// The model is driven directly with a 512-position cache (the tiny file's trained context is
// 256; positions do not matter to the counters).
TEST(MoeStats, PrefillReadsEachExpertOncePerLayerDecodeOnlyChosen) {
  const std::string file = "tiny_moe_swiglu.gguf";
  auto eng = Engine::load(options(file, 512, false));
  ASSERT_TRUE(eng.ok()) << eng.error();
  Engine& e = *eng.value();
  const Model& m = e.model();
  const int L = m.config().n_layers, E = m.config().n_experts, k = m.config().n_experts_used;
  ASSERT_EQ(E, 8);
  ASSERT_EQ(k, 2);
  const uint64_t M = e.file().tensor("blk.0.ffn_gate_up_exps.weight") != nullptr ? 2 : 3;
  KvCache kv(m.kv_geometry(), 1024, 512);
  ASSERT_TRUE(kv.add_sequence(0).ok());
  const auto ids = token_ids(513, m.config().vocab_size);
  StepOutput out;

  const Table tok0 = m.expert_load(), rd0 = m.expert_weight_reads();
  StepBatch prefill;
  prefill.seqs.push_back({0, std::span<const int32_t>(ids.data(), 512), 0, false});
  ASSERT_TRUE(m.forward(prefill, kv, e.exec(), out).ok());
  const Table tok1 = m.expert_load(), rd1 = m.expert_weight_reads();
  const Table tok = minus(tok1, tok0), rd = minus(rd1, rd0);
  ASSERT_EQ(tok.size(), size_t(L));
  for (int l = 0; l < L; ++l) {
    uint64_t sum = 0;
    int used = 0;
    for (int x = 0; x < E; ++x) {
      const size_t i = size_t(x);
      sum += tok[size_t(l)][i];
      used += tok[size_t(l)][i] > 0;
      EXPECT_EQ(rd[size_t(l)][i], tok[size_t(l)][i] > 0 ? M : 0)
          << "layer " << l << " expert " << x;
    }
    EXPECT_EQ(sum, 512u * uint64_t(k)) << "layer " << l;
    EXPECT_GT(used, k) << "layer " << l << ": a 512-token prompt should reach several experts";
  }

  StepBatch decode;
  decode.seqs.push_back({0, std::span<const int32_t>(ids.data() + 512, 1), 512, false});
  ASSERT_TRUE(m.forward(decode, kv, e.exec(), out).ok());
  const Table dtok = minus(m.expert_load(), tok1), drd = minus(m.expert_weight_reads(), rd1);
  for (int l = 0; l < L; ++l) {
    int chosen = 0;
    for (int x = 0; x < E; ++x) {
      const size_t i = size_t(x);
      EXPECT_LE(dtok[size_t(l)][i], 1u);
      chosen += dtok[size_t(l)][i] == 1;
      EXPECT_EQ(drd[size_t(l)][i], dtok[size_t(l)][i] == 1 ? M : 0) << "layer " << l;
    }
    EXPECT_EQ(chosen, k) << "layer " << l;
  }
}

// Decode (one token per step) takes its own two-job path; default numerics, so the 1-token
// dot kernels there and the 4/8-token kernels of the grouped path (bit-identical by
// construction, tests SimdVsRef/FourRow/TileWidths) must give identical logits: prompt fed
// whole vs one token per step. Both layouts' fixtures: F32 (brief's shape) and F16 (26B-like).
TEST(MoeStats, OneTokenStepsEqualGroupedPrefillBitForBit) {
  for (const char* file : {"tiny_moe_swiglu.gguf", "tiny_26b_like.gguf", "tiny_26b_r16.gguf"}) {
    const auto ids = token_ids(40, 272);
    std::vector<float> whole, steps;
    for (int64_t chunk : {int64_t(64), int64_t(1)}) {
      auto e = Engine::load(options(file, chunk, false));
      ASSERT_TRUE(e.ok()) << e.error();
      Session s(*e.value());
      auto lg = s.logits_all(ids);
      ASSERT_TRUE(lg.ok()) << lg.error();
      (chunk == 1 ? steps : whole) = std::move(lg).value();
    }
    EXPECT_EQ(whole, steps) << file;
  }
}

// Worked numbers: counts (4, 4, 0, 0) of 8 routed pairs over 4 experts: mean 2, max/mean 2,
// entropy -2 * (1/2) log2(1/2) = 1 bit, normalised by log2(4) = 2 -> 0.5, two unused.
TEST(MoeStats, LoadSummaryArithmetic) {
  const MoeLoadSummary s = summarize_expert_load({4, 4, 0, 0});
  EXPECT_EQ(s.total, 8u);
  EXPECT_EQ(s.max, 4u);
  EXPECT_EQ(s.min, 0u);
  EXPECT_DOUBLE_EQ(s.mean, 2.0);
  EXPECT_DOUBLE_EQ(s.max_over_mean, 2.0);
  EXPECT_DOUBLE_EQ(s.entropy, 1.0);
  EXPECT_DOUBLE_EQ(s.entropy_norm, 0.5);
  EXPECT_EQ(s.unused, 2);
  const MoeLoadSummary u = summarize_expert_load({3, 3, 3, 3, 3, 3, 3, 3});
  EXPECT_DOUBLE_EQ(u.max_over_mean, 1.0);
  EXPECT_DOUBLE_EQ(u.entropy, 3.0);
  EXPECT_DOUBLE_EQ(u.entropy_norm, 1.0);
  EXPECT_EQ(u.unused, 0);
  const MoeLoadSummary z = summarize_expert_load({0, 0});
  EXPECT_EQ(z.total, 0u);
  EXPECT_EQ(z.max_over_mean, 0.0);
}

}  // namespace g4
