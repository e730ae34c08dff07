// g4 eval guard's metrics against scikit-learn (scripts/gen_guard_metrics_fixture.py), the
// JSONL data-set parser's errors, and the injection detector on the seeded generated corpus
// (src/eval/injection_corpus.h): fixed-seed precision/recall gated near the measured values on
// the dev and held-out halves, and hidden Unicode / special-token strings neutralised by strip
// and datamark on every hostile sample that carries them.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "eval/guard_eval.h"
#include "eval/injection_corpus.h"
#include "guard/injection.h"

namespace g4 {
namespace {

TEST(GuardEvalMetrics, MatchesScikitLearn) {
  std::ifstream in(std::string(G4_SOURCE_DIR) + "/tests/unit/data/guard_metrics_sklearn.json");
  ASSERT_TRUE(in.good());
  const auto fx = nlohmann::json::parse(in);
  ASSERT_GE(fx["cases"].size(), 5u);
  for (const auto& c : fx["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    std::vector<float> s;
    for (const auto& v : c["scores"]) s.push_back(float(v.get<double>()));
    const std::vector<int> y = c["labels"].get<std::vector<int>>();
    EXPECT_NEAR(average_precision(s, y), c["average_precision"].get<double>(), 1e-12);
    for (const auto& at : c["at"]) {
      const BinaryMetrics m = metrics_at(s, y, float(at["threshold"].get<double>()));
      EXPECT_NEAR(m.precision, at["precision"].get<double>(), 1e-12) << at["threshold"];
      EXPECT_NEAR(m.recall, at["recall"].get<double>(), 1e-12) << at["threshold"];
      EXPECT_NEAR(m.f1, at["f1"].get<double>(), 1e-12) << at["threshold"];
    }
    for (const auto& f : c["fpr_thresholds"]) {
      const FprThreshold t = threshold_for_fpr(s, y, f["target"].get<double>());
      EXPECT_EQ(t.reachable, f["reachable"].get<bool>()) << f["target"];
      EXPECT_EQ(t.threshold, float(f["threshold"].get<double>())) << f["target"];
      if (t.reachable) {
        EXPECT_NEAR(t.at.recall, f["tpr"].get<double>(), 1e-12) << f["target"];
        EXPECT_NEAR(t.at.fpr, f["fpr"].get<double>(), 1e-12) << f["target"];
      }
    }
  }
}

TEST(GuardEvalMetrics, EdgeCases) {
  EXPECT_TRUE(std::isnan(average_precision({0.5f, 0.2f}, {0, 0})));  // no positive
  const BinaryMetrics m = metrics_at({0.1f, 0.2f}, {1, 0}, 0.5f);    // nothing flagged
  EXPECT_EQ(m.precision, 0.0);
  EXPECT_EQ(m.recall, 0.0);
  EXPECT_EQ(m.f1, 0.0);
  // No negative: every score meets any target; the lowest one is the threshold.
  EXPECT_EQ(threshold_for_fpr({0.3f, 0.7f}, {1, 1}, 0.0).threshold, 0.3f);
}

TEST(GuardEvalData, ParsesLinesAndNamesErrors) {
  auto ok = parse_guard_eval_line(
      R"({"text": "hi", "response": "yo", "labels": {"harassment": 1, "hate_speech": false}})");
  ASSERT_TRUE(ok.ok()) << ok.error();
  EXPECT_EQ(ok.value().response, "yo");
  EXPECT_EQ(ok.value().labels.at("harassment"), 1);
  EXPECT_EQ(ok.value().labels.at("hate_speech"), 0);
  const std::pair<const char*, const char*> bad[] = {
      {R"({"text": "hi"})", "missing 'labels'"},
      {R"({"labels": {"harassment": 1}})", "missing 'text'"},
      {R"({"text": "", "labels": {"harassment": 1}})", "'text' must be"},
      {R"({"text": "hi", "labels": {"harassment": 2}})", "labels.harassment must be"},
      {R"({"text": "hi", "labels": {"Bad Name": 1}})", "labels: policy name"},
      {R"({"text": "hi", "label": {"harassment": 1}})", "unknown key 'label'"},
      {R"({"text": "hi", "response": 3, "labels": {"harassment": 1}})", "'response' must"},
      {R"(["text"])", "JSON object"},
      {R"({"text": "hi", )", "not valid JSON"},
  };
  for (const auto& [line, msg] : bad) {
    auto r = parse_guard_eval_line(line);
    ASSERT_FALSE(r.ok()) << line;
    EXPECT_NE(r.error().find(msg), std::string::npos) << r.error();
  }
  // The file loader names the line (blank lines count, are skipped).
  const std::string path = ::testing::TempDir() + "/guard_eval_bad.jsonl";
  std::ofstream(path) << R"({"text": "a", "labels": {"harassment": 0}})"
                      << "\n\n"
                      << R"({"text": "b", "labels": {"harassment": "yes"}})"
                      << "\n";
  auto f = load_guard_eval_file(path);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.error().find(path + ":3: labels.harassment"), std::string::npos) << f.error();
  std::ofstream(path) << "\n  \n";
  EXPECT_FALSE(load_guard_eval_file(path).ok());
  EXPECT_FALSE(load_guard_eval_file(path + ".missing").ok());
}

TEST(InjectionCorpus, DeterministicAndBalanced) {
  const auto a = generate_injection_corpus(7, 40, 60, CorpusSplit::kDev);
  const auto b = generate_injection_corpus(7, 40, 60, CorpusSplit::kDev);
  const auto c = generate_injection_corpus(8, 40, 60, CorpusSplit::kDev);
  const auto h = generate_injection_corpus(7, 40, 60, CorpusSplit::kHeldOut);
  ASSERT_EQ(a.size(), 100u);
  int hostile = 0, same_c = 0, same_h = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].text, b[i].text);
    hostile += a[i].hostile;
    same_c += a[i].text == c[i].text;
    same_h += a[i].text == h[i].text;
  }
  EXPECT_EQ(hostile, 60);
  EXPECT_LT(same_c, 10);
  EXPECT_EQ(same_h, 0);
}

// Measured 1.000 / 1.000 on both halves (seed 1, 300 + 300 each); before the detector work
// (the committed heuristics of 68c0ff2): dev 0.753 / 0.740, held-out 0.604 / 0.667.
constexpr double kDevPrecision = 0.97, kDevRecall = 0.97, kHeldPrecision = 0.97, kHeldRecall = 0.97;

DetectionCounts measure(uint64_t seed, CorpusSplit split) {
  DetectionCounts c;
  for (const InjectionSample& s : generate_injection_corpus(seed, 300, 300, split)) {
    const bool f = screen_untrusted(s.text, InjectionAction::kFlag).suspicious;
    if (s.hostile)
      (f ? c.tp : c.fn) += 1;
    else
      (f ? c.fp : c.tn) += 1;
  }
  return c;
}

// Measured with `g4 eval injection --seed 1` (README, Safety guard); gated a little below.
TEST(InjectionCorpus, DetectorPrecisionRecallFixedSeed) {
  const DetectionCounts dev = measure(1, CorpusSplit::kDev);
  const DetectionCounts held = measure(1, CorpusSplit::kHeldOut);
  std::printf(
      "injection corpus seed 1: dev precision %.3f recall %.3f; held-out precision %.3f "
      "recall %.3f\n",
      dev.precision(), dev.recall(), held.precision(), held.recall());
  EXPECT_GE(dev.precision(), kDevPrecision);
  EXPECT_GE(dev.recall(), kDevRecall);
  EXPECT_GE(held.precision(), kHeldPrecision);
  EXPECT_GE(held.recall(), kHeldRecall);
}

// Code points of a UTF-8 string (the test's own decoder: input here is valid UTF-8).
std::vector<uint32_t> code_points(const std::string& s) {
  std::vector<uint32_t> out;
  for (size_t i = 0; i < s.size();) {
    const uint8_t c = uint8_t(s[i]);
    const int n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    uint32_t v = n == 1 ? c : n == 2 ? c & 0x1F : n == 3 ? c & 0x0F : c & 0x07;
    for (int k = 1; k < n && i + size_t(k) < s.size(); ++k)
      v = (v << 6) | (uint8_t(s[i + k]) & 0x3F);
    out.push_back(v);
    i += size_t(n);
  }
  return out;
}

bool hidden(uint32_t cp) {
  return (cp >= 0xE0000 && cp <= 0xE007F) || (cp >= 0x202A && cp <= 0x202E) ||
         (cp >= 0x2066 && cp <= 0x2069) || cp == 0x200E || cp == 0x200F || cp == 0x061C ||
         cp == 0x200B || cp == 0x2060 || cp == 0xFEFF || cp == 0x00AD;
}

// Every hostile sample that smuggles hidden characters or special-token strings comes out of
// strip and datamark without any (checked by this test's own scan, not the detector's).
TEST(InjectionCorpus, StripAndDatamarkNeutraliseSmugglingAndSpecialTokens) {
  const char* const specials[] = {
      "<start_of_turn>", "<end_of_turn>", "<bos>",   "<|im_start|>", "<|im_end|>",
      "[INST]",          "[/INST]",       "<<SYS>>", "<|eot_id|>",   "<|start_header_id|>",
      "<|turn>",         "<turn|>"};
  int checked = 0;
  for (CorpusSplit split : {CorpusSplit::kDev, CorpusSplit::kHeldOut}) {
    for (const InjectionSample& s : generate_injection_corpus(3, 0, 200, split)) {
      bool had_hidden = false, had_special = false;
      for (uint32_t cp : code_points(s.text)) had_hidden |= hidden(cp);
      for (const char* t : specials) had_special |= s.text.find(t) != std::string::npos;
      if (!had_hidden && !had_special) continue;
      ++checked;
      for (InjectionAction act : {InjectionAction::kStrip, InjectionAction::kDatamark}) {
        const InjectionReport r = screen_untrusted(s.text, act);
        EXPECT_TRUE(r.suspicious) << s.text;
        for (uint32_t cp : code_points(r.text)) EXPECT_FALSE(hidden(cp)) << std::hex << cp;
        for (const char* t : specials) EXPECT_EQ(r.text.find(t), std::string::npos) << t;
        // What is left is clean: screening it again finds no hidden or special-token text.
        for (const auto& f : screen_untrusted(r.text, InjectionAction::kFlag).findings)
          EXPECT_TRUE(f.kind != "special_token" && f.kind != "tag_character" &&
                      f.kind != "bidi_control" && f.kind != "invisible")
              << f.kind << " in " << r.text;
      }
    }
  }
  EXPECT_GE(checked, 150);  // tag, bidi, zero-width and special-token samples of 400
}

}  // namespace
}  // namespace g4
