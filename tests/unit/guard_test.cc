// The safety guard (src/guard): ids and P(Yes) against transformers float32 on the tiny Gemma 2
// checkpoint (scripts/gen_guard_fixture.py, same template text and token ids), from the HF
// directory and from its GGUF twin; windows; batched forks equal one-policy-at-a-time runs;
// policies and risk profiles (built-in text, custom policies, profile files, bad input).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "../golden/model_path.h"
#include "exact_options.h"
#include "guard/guard.h"
#include "guard/policies.h"

namespace g4 {
namespace {

const std::string kDir = std::string(G4_SOURCE_DIR) + "/tests/golden/";

nlohmann::json fixture() {
  std::ifstream in(kDir + "tiny_hf/gemma2_2b_like/guard_expected.json");
  EXPECT_TRUE(in.good());
  return nlohmann::json::parse(in);
}

GuardOptions fixture_options(const nlohmann::json& fx) {
  GuardOptions go;
  const auto& t = fx["template"];
  go.tmpl.preamble_prompt = t["preamble_prompt"];
  go.tmpl.preamble_response = t["preamble_response"];
  go.tmpl.prompt_open = t["prompt_open"];
  go.tmpl.prompt_close = t["prompt_close"];
  go.tmpl.response_open = t["response_open"];
  go.tmpl.response_close = t["response_close"];
  go.tmpl.principles = t["principles"];
  go.tmpl.epilogue_prompt = t["epilogue_prompt"];
  go.tmpl.epilogue_response = t["epilogue_response"];
  go.window_tokens = fx["window_tokens"];
  go.overlap_tokens = fx["overlap_tokens"];
  return go;
}

RiskProfile fixture_profile(const nlohmann::json& fx) {
  RiskProfile p;
  p.name = "test";
  p.default_threshold = 0.01f;
  for (const auto& j : fx["policies"]) {
    GuardPolicy gp;
    gp.name = j["name"];
    gp.prompt_guideline = j["prompt"];
    gp.response_guideline = j["response"];
    p.policies.push_back(gp);
  }
  return p;
}

std::unique_ptr<Guard> tiny_guard(const std::string& path, const nlohmann::json& fx,
                                  bool answer_ids = false) {
  EngineOptions eo = exact_options(path);
  eo.n_ctx = 256;      // the checkpoint's trained context
  eo.max_chunk = 128;  // policy suffixes are ~70 toy tokens
  GuardOptions go = fixture_options(fx);
  if (answer_ids) {
    go.yes_id = fx["yes_id"];
    go.no_id = fx["no_id"];
  }
  auto g = Guard::load(eo, go);
  EXPECT_TRUE(g.ok()) << g.error();
  return g.ok() ? std::move(g.value()) : nullptr;
}

class GuardTiny : public ::testing::TestWithParam<const char*> {};

TEST_P(GuardTiny, MatchesTransformers) {
  const auto fx = fixture();
  auto g = tiny_guard(kDir + GetParam(), fx);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->yes_id(), fx["yes_id"].get<int>());
  EXPECT_EQ(g->no_id(), fx["no_id"].get<int>());
  const RiskProfile prof = fixture_profile(fx);
  double max_p = 0, max_odds = 0;
  for (const auto& c : fx["cases"]) {
    GuardInput in{c["prompt"], c["response"]};
    auto built = g->build(in, prof.policies);
    ASSERT_TRUE(built.ok()) << built.error();
    const auto& want_prefixes = c["prefixes"];
    ASSERT_EQ(built.value().size(), want_prefixes.size()) << c["name"];
    for (size_t w = 0; w < want_prefixes.size(); ++w) {
      EXPECT_EQ(built.value()[w].prefix, want_prefixes[w].get<std::vector<int32_t>>())
          << c["name"] << " window " << w;
      for (size_t i = 0; i < prof.policies.size(); ++i)
        EXPECT_EQ(built.value()[w].suffixes[i], c["suffixes"][i].get<std::vector<int32_t>>());
    }
    auto r = g->check(in, prof);
    ASSERT_TRUE(r.ok()) << r.error();
    EXPECT_EQ(r.value().windows, int(want_prefixes.size()));
    ASSERT_EQ(r.value().scores.size(), prof.policies.size());
    for (size_t i = 0; i < prof.policies.size(); ++i) {
      const double want = c["scores"][i];
      const double got = r.value().scores[i].score;
      max_p = std::max(max_p, std::fabs(got - want));
      EXPECT_NEAR(got, want, 1e-3) << c["name"] << " " << prof.policies[i].name;
      // Log-odds too: the scores sit near 0, where probabilities hide logit differences.
      const double p = std::clamp(got, 1e-12, 1 - 1e-12);
      double best = -1e9;
      for (size_t w = 0; w < want_prefixes.size(); ++w)
        best = std::max(best, c["log_odds"][w * prof.policies.size() + i].get<double>());
      max_odds = std::max(max_odds, std::fabs(std::log(p / (1 - p)) - best));
      EXPECT_NEAR(std::log(p / (1 - p)), best, 1e-3) << c["name"] << " " << prof.policies[i].name;
    }
  }
  std::printf("%s: max |P(Yes) diff| %.2e, max |log-odds diff| %.2e vs transformers\n", GetParam(),
              max_p, max_odds);
}

INSTANTIATE_TEST_SUITE_P(Files, GuardTiny, ::testing::Values("tiny_hf/gemma2_2b_like"));

// The GGUF twin (gguf-py, llama.cpp's layout) carries the toy vocabulary as an SPM list that
// does not reproduce the HF tokenizer, so it is fed the fixture's ids and answer ids: the same
// forward, forks and batch from the other loader.
TEST(GuardTinyGguf, MatchesTransformersOnFixtureIds) {
  const auto fx = fixture();
  auto g = tiny_guard(kDir + "tiny_gemma2/gemma2_2b_like.gguf", fx, true);
  ASSERT_TRUE(g);
  double max_p = 0;
  for (const auto& c : fx["cases"]) {
    const size_t n_pol = c["suffixes"].size();
    for (size_t w = 0; w < c["prefixes"].size(); ++w) {
      GuardPrompt p;
      p.prefix = c["prefixes"][w].get<std::vector<int32_t>>();
      for (const auto& s : c["suffixes"]) p.suffixes.push_back(s.get<std::vector<int32_t>>());
      std::vector<float> scores;
      Status st = g->score(p, scores);
      ASSERT_TRUE(st.ok()) << st.message();
      for (size_t i = 0; i < n_pol; ++i) {
        const double want = c["window_scores"][w][i];
        max_p = std::max(max_p, std::fabs(scores[i] - want));
        EXPECT_NEAR(scores[i], want, 1e-3) << c["name"] << " window " << w;
      }
    }
  }
  std::printf("gguf: max |P(Yes) diff| %.2e vs transformers\n", max_p);
}

// The batched forks give the same scores as one policy per check (fresh prefix each time).
TEST(Guard, BatchedForksEqualSeparateRuns) {
  const auto fx = fixture();
  auto g = tiny_guard(kDir + "tiny_hf/gemma2_2b_like", fx);
  ASSERT_TRUE(g);
  const RiskProfile all = fixture_profile(fx);
  for (const auto& c : fx["cases"]) {
    GuardInput in{c["prompt"], c["response"]};
    auto r = g->check(in, all);
    ASSERT_TRUE(r.ok()) << r.error();
    for (size_t i = 0; i < all.policies.size(); ++i) {
      RiskProfile one = all;
      one.policies = {all.policies[i]};
      auto s = g->check(in, one);
      ASSERT_TRUE(s.ok()) << s.error();
      EXPECT_EQ(s.value().scores[0].score, r.value().scores[i].score) << c["name"];
    }
  }
}

TEST(Guard, ThresholdsFlagAndFire) {
  const auto fx = fixture();
  auto g = tiny_guard(kDir + "tiny_hf/gemma2_2b_like", fx);
  ASSERT_TRUE(g);
  RiskProfile p = fixture_profile(fx);
  GuardInput in{"How do I bake bread?", ""};
  p.default_threshold = 1.0f;
  auto r = g->check(in, p);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r.value().flagged);
  EXPECT_EQ(r.value().fired, "");
  p.thresholds["slurs"] = 0.0f;  // always fires
  r = g->check(in, p);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.value().flagged);
  EXPECT_EQ(r.value().fired, "slurs");
  EXPECT_FALSE(r.value().scores[0].flagged);
  EXPECT_TRUE(r.value().scores[1].flagged);
  EXPECT_EQ(r.value().scores[1].threshold, 0.0f);
}

TEST(Guard, BadInputsAreErrors) {
  const auto fx = fixture();
  auto g = tiny_guard(kDir + "tiny_hf/gemma2_2b_like", fx);
  ASSERT_TRUE(g);
  RiskProfile p = fixture_profile(fx);
  EXPECT_FALSE(g->check({"", ""}, p).ok());
  EXPECT_FALSE(g->check({std::string(300 * 1024, 'a'), ""}, p).ok());
  RiskProfile none = p;
  none.policies.clear();
  EXPECT_FALSE(g->check({"hi", ""}, none).ok());
  // A policy too long for the context: refused, and the guard still works afterwards.
  RiskProfile huge = p;
  huge.policies[0].prompt_guideline = std::string(400, 'x');
  EXPECT_FALSE(g->check({"hi", ""}, huge).ok());
  EXPECT_TRUE(g->check({"hi", ""}, p).ok());
  // Special-token text in user input stays text: ids equal those of the same bytes as content.
  auto a = g->build({"<end_of_turn> hi", ""}, p.policies);
  ASSERT_TRUE(a.ok());
}

// The default model (Gemma 3 270M Q4_K_M) with ShieldGemma's own template and the four built-in
// policies vs llama.cpp (scripts/gen_guard_llamacpp_fixture.py): the same ids exactly; scores
// within the int8-activation noise of default numerics (below).
TEST(GuardDefaultModel, MatchesLlamaCpp) {
  const std::string model = test::default_model_path();
  if (!std::ifstream(model).good()) GTEST_SKIP() << "default model not found: " << model;
  std::ifstream in(kDir + "guard_gemma3_270m.json");
  ASSERT_TRUE(in.good());
  const auto fx = nlohmann::json::parse(in);
  EngineOptions eo;
  eo.model_path = model;
  eo.n_threads = 2;
  eo.n_ctx = 2048;
  eo.embed_scale = EmbedScale::kExact;  // llama.cpp's sqrtf(d), not HF's bf16-rounded scale
  auto g = Guard::load(eo, GuardOptions{});
  ASSERT_TRUE(g.ok()) << g.error();
  EXPECT_EQ(g.value()->yes_id(), fx["yes_id"].get<int>());
  EXPECT_EQ(g.value()->no_id(), fx["no_id"].get<int>());
  auto prof = builtin_profile("balanced");
  ASSERT_TRUE(prof.ok());
  double max_p = 0, max_odds = 0;
  for (const auto& c : fx["cases"]) {
    GuardInput gi{c["prompt"], c["response"]};
    auto built = g.value()->build(gi, prof.value().policies);
    ASSERT_TRUE(built.ok()) << built.error();
    ASSERT_EQ(built.value().size(), 1u);
    EXPECT_EQ(built.value()[0].prefix, c["prefix"].get<std::vector<int32_t>>()) << c["name"];
    for (size_t i = 0; i < 4; ++i)
      EXPECT_EQ(built.value()[0].suffixes[i], c["suffixes"][i].get<std::vector<int32_t>>());
    auto r = g.value()->check(gi, prof.value());
    ASSERT_TRUE(r.ok()) << r.error();
    for (size_t i = 0; i < 4; ++i) {
      const double got = r.value().scores[i].score;
      max_p = std::max(max_p, std::fabs(got - c["scores"][i].get<double>()));
      max_odds =
          std::max(max_odds, std::fabs(std::log(got / (1 - got)) - c["log_odds"][i].get<double>()));
    }
  }
  std::printf("default model: max |P(Yes) diff| %.2e, max |log-odds diff| %.2e vs llama.cpp\n",
              max_p, max_odds);
  // Not 1e-3: int8 activation rounding moves 270M's logits by ~0.2 (README, Correctness), and
  // llama.cpp's own log-odds move by up to 0.2 when the same ids are split into two evals
  // (llamacpp_self_log_odds_diff). Measured: 3.6e-2 in P(Yes), 0.40 in log-odds.
  EXPECT_LE(max_odds, 0.6);
  EXPECT_LE(max_p, 0.06);
}

// Prefix once + forked, batched suffixes give the same bits as each policy's whole prompt run
// alone through a Session (batch invariance, copy-on-write forks).
TEST(GuardDefaultModel, ForksEqualStraightRuns) {
  const std::string model = test::default_model_path();
  if (!std::ifstream(model).good()) GTEST_SKIP() << "default model not found: " << model;
  EngineOptions eo;
  eo.model_path = model;
  eo.n_threads = 2;
  eo.n_ctx = 2048;
  auto g = Guard::load(eo, GuardOptions{});
  ASSERT_TRUE(g.ok()) << g.error();
  auto e = Engine::load(eo);
  ASSERT_TRUE(e.ok()) << e.error();
  auto prof = builtin_profile("balanced");
  ASSERT_TRUE(prof.ok());
  const GuardInput gi{"Write a message telling my coworker she is worthless.", ""};
  auto built = g.value()->build(gi, prof.value().policies);
  ASSERT_TRUE(built.ok());
  auto r = g.value()->check(gi, prof.value());
  ASSERT_TRUE(r.ok()) << r.error();
  const int vocab = e.value()->model().config().vocab_size;
  for (size_t i = 0; i < 4; ++i) {
    std::vector<int32_t> ids = built.value()[0].prefix;
    ids.insert(ids.end(), built.value()[0].suffixes[i].begin(), built.value()[0].suffixes[i].end());
    Session s(*e.value());
    auto lg = s.logits_all(ids);
    ASSERT_TRUE(lg.ok());
    const float* row = lg.value().data() + (ids.size() - 1) * size_t(vocab);
    const float d = row[g.value()->yes_id()] - row[g.value()->no_id()];
    const float p = float(1.0 / (1.0 + std::exp(-double(d))));
    EXPECT_EQ(r.value().scores[i].score, p) << prof.value().policies[i].name;
  }
}

// ShieldGemma's published wording, composed from its parts.
TEST(GuardPolicies, BuiltinText) {
  const auto& b = builtin_policies();
  ASSERT_EQ(b.size(), 4u);
  EXPECT_EQ(b[0].name, "dangerous_content");
  EXPECT_EQ(b[0].prompt_guideline,
            "\"No Dangerous Content\": The prompt shall not contain or seek generation of content "
            "that harming oneself and/or others (e.g., accessing or building firearms and "
            "explosive devices, promotion of terrorism, instructions for suicide).");
  EXPECT_EQ(b[1].response_guideline,
            "\"No Harassment\": The chatbot shall not generate content that is malicious, "
            "intimidating, bullying, or abusive content targeting another individual (e.g., "
            "physical threats, denial of tragic events, disparaging victims of violence).");
  EXPECT_NE(b[2].prompt_guideline.find("in a positive manner."), std::string::npos);
  EXPECT_NE(b[3].prompt_guideline.find("sex education are permitted."), std::string::npos);
  auto c = make_custom_policy("competitor_pricing", "discusses competitors' prices");
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c.value().prompt_guideline,
            "\"No Competitor Pricing\": The prompt shall not contain or seek generation of "
            "content that discusses competitors' prices.");
  EXPECT_FALSE(make_custom_policy("Bad Name", "x").ok());
  EXPECT_FALSE(make_custom_policy("harassment", "x").ok());
  EXPECT_FALSE(make_custom_policy("ok", "   ").ok());
  EXPECT_FALSE(make_custom_policy("ok", std::string(3000, 'a')).ok());
}

TEST(GuardPolicies, Profiles) {
  for (auto [name, t] : {std::pair{"strict", 0.3f}, {"balanced", 0.5f}, {"permissive", 0.8f}}) {
    auto p = builtin_profile(name);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p.value().threshold("harassment"), t);
    EXPECT_EQ(p.value().policies.size(), 4u);
  }
  EXPECT_FALSE(builtin_profile("lenient").ok());
  auto p = parse_profile_json(R"({"base": "strict", "thresholds": {"harassment": 0.6},
      "policies": ["harassment", {"name": "pricing", "description": "quotes prices"}],
      "fail": "open"})");
  ASSERT_TRUE(p.ok()) << p.error();
  EXPECT_EQ(p.value().policies.size(), 2u);
  EXPECT_EQ(p.value().threshold("harassment"), 0.6f);
  EXPECT_EQ(p.value().threshold("pricing"), 0.3f);
  EXPECT_EQ(p.value().fail, GuardFailMode::kOpen);
  // Malformed profiles: each is an error that names the problem, never a crash.
  const char* bad[] = {
      "",
      "[]",
      "{",
      R"({"bogus": 1})",
      R"({"base": "lenient"})",
      R"({"default_threshold": 1.5})",
      R"({"default_threshold": "high"})",
      R"({"thresholds": {"nope": 0.5}})",
      R"({"thresholds": {"harassment": -0.1}})",
      R"({"thresholds": []})",
      R"({"policies": []})",
      R"({"policies": ["nope"]})",
      R"({"policies": [42]})",
      R"({"policies": [{"name": "x"}]})",
      R"({"policies": [{"name": "x", "description": "d", "extra": 1}]})",
      R"({"policies": ["harassment", "harassment"]})",
      R"({"fail": "sideways"})",
      "{\"name\": \"\xff\"}",
  };
  for (const char* b : bad) {
    auto r = parse_profile_json(b);
    EXPECT_FALSE(r.ok()) << b;
    if (!r.ok()) {
      EXPECT_FALSE(r.error().empty());
    }
  }
  EXPECT_FALSE(load_profile("/nonexistent/profile.json").ok());
}

}  // namespace
}  // namespace g4
