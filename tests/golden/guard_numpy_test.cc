// The guard's scores on the default model (Gemma 3 270M Q4_K_M, ShieldGemma's template, the 4
// built-in policies) against an independent float64 NumPy forward over the same GGUF
// (scripts/gen_guard_numpy_fixture.py: gguf-py dequantisation, llama.cpp's token ids), with g4
// in exact numerics (f32 activations, f32 KV, HF's bf16-rounded embedding scale as the
// reference uses): P(Yes) within 1e-3.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "guard/guard.h"
#include "guard/policies.h"
#include "model_path.h"

namespace g4 {
namespace {

TEST(GuardDefaultModel, MatchesNumpyFloat64Exact) {
  const std::string model = test::default_model_path();
  if (!std::ifstream(model).good()) GTEST_SKIP() << "default model not found: " << model;
  std::ifstream in(std::string(G4_SOURCE_DIR) + "/tests/golden/guard_numpy_gemma3_270m.json");
  ASSERT_TRUE(in.good());
  const auto fx = nlohmann::json::parse(in);
  EngineOptions eo;
  eo.model_path = model;
  eo.n_threads = 2;
  eo.n_ctx = 2048;
  eo.exact = true;                            // f32 activations in every matmul
  eo.kv_f32 = true;                           // the reference keeps K/V unrounded
  eo.embed_scale = EmbedScale::kBf16Rounded;  // bf16(sqrt(d)), as the reference (and HF)
  auto g = Guard::load(eo, GuardOptions{});
  ASSERT_TRUE(g.ok()) << g.error();
  EXPECT_EQ(g.value()->yes_id(), fx["yes_id"].get<int>());
  EXPECT_EQ(g.value()->no_id(), fx["no_id"].get<int>());
  auto prof = builtin_profile("balanced");
  ASSERT_TRUE(prof.ok());
  ASSERT_EQ(fx["policies"].size(), prof.value().policies.size());
  double max_p = 0, max_odds = 0;
  int n = 0;
  for (const auto& c : fx["cases"]) {
    // g4 builds the reference's ids, and check() (forked, batched) scores them.
    const GuardInput gi{c["prompt"], c["response"]};
    auto built = g.value()->build(gi, prof.value().policies);
    ASSERT_TRUE(built.ok()) << built.error();
    ASSERT_EQ(built.value().size(), 1u);
    EXPECT_EQ(built.value()[0].prefix, c["prefix"].get<std::vector<int32_t>>()) << c["name"];
    auto r = g.value()->check(gi, prof.value());
    ASSERT_TRUE(r.ok()) << r.error();
    for (size_t i = 0; i < 4; ++i) {
      EXPECT_EQ(built.value()[0].suffixes[i], c["suffixes"][i].get<std::vector<int32_t>>());
      const double got = r.value().scores[i].score, want = c["scores"][i].get<double>();
      max_p = std::max(max_p, std::fabs(got - want));
      max_odds =
          std::max(max_odds, std::fabs(std::log(got / (1 - got)) - c["log_odds"][i].get<double>()));
      ++n;
    }
  }
  std::printf(
      "default model, exact: max |P(Yes) diff| %.2e, max |log-odds diff| %.2e over %d "
      "scores vs NumPy float64\n",
      max_p, max_odds, n);
  EXPECT_EQ(n, 12);
  EXPECT_LE(max_p, 1e-3);
}

}  // namespace
}  // namespace g4
