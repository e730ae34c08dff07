// The RULER-style suite without a model (eval/ruler.h): cases repeat for a seed, fit and fill
// the context, hold their answers exactly as expected; the scorer; task and variant parsing;
// the sign test's p-values against scipy (tests/unit/data/gen_ruler_stats.py).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>
#include "eval/compare.h"
#include "eval/ruler.h"
#include "g4/engine.h"
#include "io/gguf.h"
#include "tokenizer/tokenizer.h"

namespace g4 {

namespace {

struct Tok {
  std::unique_ptr<GgufFile> file;
  Tokenizer tok;
};

const Tok& gemma4_tok() {
  static const Tok t = [] {
    auto f = GgufFile::open(std::string(G4_SOURCE_DIR) + "/tests/golden/gemma4_tok/tokenizer.gguf");
    EXPECT_TRUE(f.ok());
    auto tk = Tokenizer::from_gguf(*f.value());
    EXPECT_TRUE(tk.ok());
    return Tok{std::move(f).value(), std::move(tk).value()};
  }();
  return t;
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST(Ruler, CasesFitTheContextAndHoldTheirAnswers) {
  const Tokenizer& tok = gemma4_tok().tok;
  for (bool chat : {false, true}) {
    RulerOptions o;
    o.chat = chat;
    for (int64_t ctx : {1000, 3000}) {
      for (RulerTask task : all_ruler_tasks()) {
        SCOPED_TRACE(std::string(ruler_task_name(task)) + " ctx " + std::to_string(ctx) +
                     (chat ? " chat" : " completion"));
        auto c = make_ruler_case(tok, true, o, task, ctx, 0);
        ASSERT_TRUE(c.ok()) << c.error();
        const RulerCase& k = c.value();
        EXPECT_EQ(k.task, task);
        EXPECT_LE(int64_t(k.ids.size()), ctx);
        // Filled to within one unit (a JSON pair of two UUIDs is ~70 tokens).
        EXPECT_GE(int64_t(k.ids.size()), ctx * (task == RulerTask::kKvJson ? 90 : 95) / 100);
        EXPECT_EQ(k.ids[0], tok.bos());
        EXPECT_GT(k.max_tokens, 0);
        const std::string text = tok.decode(k.ids, true);
        ASSERT_FALSE(k.expected.empty());
        for (const std::string& e : k.expected) EXPECT_NE(text.find(e), std::string::npos) << e;
        switch (task) {
          case RulerTask::kNiahSingle:
            ASSERT_EQ(k.expected.size(), 1u);
            EXPECT_EQ(count(text, "One of the special magic numbers for "), 1u);
            EXPECT_NE(text.find(" is: " + k.expected[0] + "."), std::string::npos);
            break;
          case RulerTask::kNiahMultiKey:  // one asked, three distractors
            ASSERT_EQ(k.expected.size(), 1u);
            EXPECT_EQ(count(text, "One of the special magic numbers for "), 4u);
            EXPECT_NE(text.find(" is: " + k.expected[0] + "."), std::string::npos);
            break;
          case RulerTask::kNiahMultiValue:
          case RulerTask::kNiahMultiQuery:
            ASSERT_EQ(k.expected.size(), 4u);
            EXPECT_EQ(count(text, "One of the special magic numbers for "), 4u);
            for (const std::string& e : k.expected)
              EXPECT_NE(text.find(" is: " + e + "."), std::string::npos);
            break;
          case RulerTask::kVariableTracking: {
            // A chain: the first holds the value asked for, each next one the previous.
            ASSERT_EQ(k.expected.size(), 5u);
            const size_t first = text.find("VAR " + k.expected[0] + " = ");
            ASSERT_NE(first, std::string::npos);
            const std::string value = text.substr(first + 12, 5);
            EXPECT_NE(text.find("assigned the value " + value), std::string::npos);
            size_t at = first;
            for (size_t i = 1; i < 5; ++i) {
              const size_t next =
                  text.find("VAR " + k.expected[i] + " = VAR " + k.expected[i - 1] + ".");
              ASSERT_NE(next, std::string::npos) << i;
              EXPECT_GT(next, at);
              at = next;
            }
            EXPECT_EQ(count(text, "VAR "), 2u * (1 + 2 * 4));  // 2 chains: a value, then 4 hops
            break;
          }
          case RulerTask::kCommonWords: {
            // Every listed word's count: the 10 expected ones strictly ahead of all others.
            ASSERT_EQ(k.expected.size(), 10u);
            std::map<std::string, int> n;
            std::istringstream in(text);
            std::string line;
            int entries = 0;
            while (std::getline(in, line)) {
              const size_t dot = line.find(". ");
              if (dot == std::string::npos || dot == 0 ||
                  line.find_first_not_of("0123456789") != dot)
                continue;
              ++n[line.substr(dot + 2)];
              EXPECT_EQ(std::stoi(line.substr(0, dot)), ++entries);
            }
            int least_common = 1 << 30, most_other = 0;
            for (const auto& [w, m] : n) {
              const bool common =
                  std::find(k.expected.begin(), k.expected.end(), w) != k.expected.end();
              if (common) least_common = std::min(least_common, m);
              if (!common) most_other = std::max(most_other, m);
            }
            EXPECT_EQ(n.size() > 10, true);
            EXPECT_GT(least_common, most_other);
            break;
          }
          case RulerTask::kFrequentWords: {
            ASSERT_EQ(k.expected.size(), 3u);
            const size_t from = text.find("coded words.\n\n") + 14, to = text.find("\n\nQuestion");
            std::map<std::string, int> n;
            std::istringstream in(text.substr(from, to - from));
            std::string w;
            while (in >> w) ++n[w];
            std::vector<std::pair<int, std::string>> by;
            for (const auto& [word, m] : n) by.emplace_back(m, word);
            std::sort(by.rbegin(), by.rend());
            ASSERT_GE(by.size(), 4u);
            for (size_t i = 0; i < 3; ++i) {
              EXPECT_EQ(by[i].second, k.expected[i]);
              EXPECT_GT(by[i].first, by[i + 1].first);
            }
            break;
          }
          case RulerTask::kKvJson: {
            ASSERT_EQ(k.expected.size(), 1u);
            EXPECT_EQ(k.expected[0].size(), 36u);
            // The asked key maps to the expected value in the object.
            const size_t q = text.find("the key \"");
            ASSERT_NE(q, std::string::npos);
            const std::string key = text.substr(q + 9, 36);
            EXPECT_NE(text.find("\"" + key + "\": \"" + k.expected[0] + "\""), std::string::npos);
            // The object is valid JSON with distinct keys.
            const size_t open = text.find('{'), close = text.find('}');
            ASSERT_LT(open, close);
            const auto obj = nlohmann::json::parse(text.substr(open, close - open + 1));
            EXPECT_EQ(obj.at(key).get<std::string>(), k.expected[0]);
            EXPECT_GT(obj.size(), 10u);
            EXPECT_EQ(obj.size(), count(text, "\": \""));
            break;
          }
        }
      }
    }
  }
}

TEST(Ruler, SameSeedSameCaseNeedleTasksShareTheFiller) {
  const Tokenizer& tok = gemma4_tok().tok;
  RulerOptions o;
  o.chat = true;
  for (RulerTask task : all_ruler_tasks()) {
    auto a = make_ruler_case(tok, true, o, task, 1500, 0).value();
    auto b = make_ruler_case(tok, true, o, task, 1500, 0).value();
    auto c = make_ruler_case(tok, true, o, task, 1500, 1).value();
    RulerOptions o2 = o;
    o2.seed = 2;
    auto d = make_ruler_case(tok, true, o2, task, 1500, 0).value();
    EXPECT_EQ(a.ids, b.ids) << ruler_task_name(task);
    EXPECT_EQ(a.expected, b.expected);
    EXPECT_NE(a.ids, c.ids) << ruler_task_name(task);
    EXPECT_NE(a.ids, d.ids) << ruler_task_name(task);
  }
  // The needle tasks of one sample begin alike: the same preamble and filler up to a needle.
  auto common = [&](RulerTask x, RulerTask y) {
    auto a = make_ruler_case(tok, true, o, x, 4000, 3).value().ids;
    auto b = make_ruler_case(tok, true, o, y, 4000, 3).value().ids;
    return size_t(std::mismatch(a.begin(), a.end(), b.begin(), b.end()).first - a.begin());
  };
  size_t total = 0;
  for (RulerTask t :
       {RulerTask::kNiahMultiKey, RulerTask::kNiahMultiValue, RulerTask::kNiahMultiQuery}) {
    const size_t n = common(RulerTask::kNiahSingle, t);
    EXPECT_GT(n, 40u);  // at least the chat markup and the preamble
    total += n;
  }
  EXPECT_GT(total, 3u * 200);  // and on average well into the filler
}

TEST(Ruler, ScoreCountsWholeItemsCaseInsensitive) {
  const std::vector<std::string> want = {"1234567", "bokatu", "ABCDE"};
  EXPECT_DOUBLE_EQ(ruler_score(want, "1234567, Bokatu and abcde."), 1.0);
  EXPECT_DOUBLE_EQ(ruler_score(want, " bokatu"), 1.0 / 3);
  EXPECT_DOUBLE_EQ(ruler_score(want, "1234567 and ABCDE"), 2.0 / 3);
  EXPECT_DOUBLE_EQ(ruler_score(want, "nothing here"), 0.0);
  EXPECT_DOUBLE_EQ(ruler_score(want, ""), 0.0);
  // Inside a longer number or word it does not count; a later whole occurrence does.
  EXPECT_DOUBLE_EQ(ruler_score({"1234567"}, "12345678"), 0.0);
  EXPECT_DOUBLE_EQ(ruler_score({"1234567"}, "91234567"), 0.0);
  EXPECT_DOUBLE_EQ(ruler_score({"bokatu"}, "bokatus"), 0.0);
  EXPECT_DOUBLE_EQ(ruler_score({"1234567"}, "12345678 or 1234567."), 1.0);
  EXPECT_DOUBLE_EQ(ruler_score({"9f0e-11"}, "key: \"9f0e-11\""), 1.0);
  EXPECT_DOUBLE_EQ(ruler_score({}, "anything"), 0.0);
}

TEST(Ruler, BadArguments) {
  const Tokenizer& tok = gemma4_tok().tok;
  RulerOptions o;
  EXPECT_FALSE(make_ruler_case(tok, true, o, RulerTask::kNiahSingle, 64, 0).ok());
  EXPECT_FALSE(make_ruler_case(tok, true, o, RulerTask::kCommonWords, 1000, -1).ok());
  // Too short for the task's fixed part: a clear error, not a prompt past the context.
  auto c = make_ruler_case(tok, true, o, RulerTask::kFrequentWords, 200, 0);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().find("too short"), std::string::npos) << c.error();

  EXPECT_EQ(parse_ruler_tasks("all").value(), all_ruler_tasks());
  EXPECT_EQ(parse_ruler_tasks("vt,cwe,vt").value(),
            (std::vector<RulerTask>{RulerTask::kVariableTracking, RulerTask::kCommonWords}));
  auto bad = parse_ruler_tasks("vt,qa");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().find("'qa'"), std::string::npos);
  EXPECT_NE(bad.error().find("kv_json"), std::string::npos);  // lists the known ones
  EXPECT_FALSE(parse_ruler_tasks("").ok());
  EXPECT_FALSE(parse_ruler_tasks("vt,").ok());
  for (RulerTask t : all_ruler_tasks())
    EXPECT_EQ(parse_ruler_tasks(ruler_task_name(t)).value(), std::vector<RulerTask>{t});
}

TEST(EvalCompare, VariantSpecs) {
  auto p = parse_compare("kv=f16:kv=f32");
  ASSERT_TRUE(p.ok()) << p.error();
  EngineOptions a, b;
  a.kv_f32 = true;
  ASSERT_TRUE(apply_variant(p.value().first, &a).ok());
  ASSERT_TRUE(apply_variant(p.value().second, &b).ok());
  EXPECT_FALSE(a.kv_f32);
  EXPECT_TRUE(b.kv_f32);
  EXPECT_EQ(p.value().second.spec, "kv=f32");

  auto q = parse_compare("default:kv=f32,exact=on");
  ASSERT_TRUE(q.ok()) << q.error();
  EXPECT_TRUE(q.value().first.settings.empty());
  EngineOptions c;
  ASSERT_TRUE(apply_variant(q.value().second, &c).ok());
  EXPECT_TRUE(c.kv_f32 && c.exact);

  auto unknown = parse_compare("kv=f16:nosuchkey=on");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.error().find("unknown engine variant key 'nosuchkey'"), std::string::npos)
      << unknown.error();
  EXPECT_NE(unknown.error().find("kv=f16|f32"), std::string::npos);
  for (const char* s : {"kv=f16", "kv=f16:kv=f32:kv=f16", ":kv=f32", "kv=f16:", "kv=q9:kv=f32",
                        "kv:kv=f32", "=f16:kv=f32", "kv=f16,:kv=f32"})
    EXPECT_FALSE(parse_compare(s).ok()) << s;
}

TEST(EvalCompare, BinomialPValuesMatchScipy) {
  std::ifstream in(std::string(G4_SOURCE_DIR) + "/tests/unit/data/binomtest_p.txt");
  ASSERT_TRUE(in.good());
  std::string line;
  int rows = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ls(line);
    int k = 0, n = 0;
    double want = 0;
    ls >> k >> n >> want;
    ASSERT_FALSE(ls.fail()) << line;
    const double got = binomial_two_sided_p(k, n);
    EXPECT_NEAR(got, want, 1e-10 * want + 1e-300) << "k " << k << " n " << n;
    ++rows;
  }
  EXPECT_GE(rows, 30);
  EXPECT_EQ(binomial_two_sided_p(0, 0), 1.0);
}

TEST(EvalCompare, SignTestCountsPairs) {
  const std::vector<double> a = {1, 1, 1, 0, 0.5, 1, 1, 1, 1, 0.25};
  const std::vector<double> b = {0, 0, 0, 0, 0.5, 0, 0, 0, 0, 0.75};
  const SignTest t = sign_test(a, b);
  EXPECT_EQ(t.a_better, 7);
  EXPECT_EQ(t.b_better, 1);
  EXPECT_EQ(t.ties, 2);
  EXPECT_DOUBLE_EQ(t.p, binomial_two_sided_p(1, 8));  // (1, 8) is in binomtest_p.txt
  const SignTest same = sign_test(a, a);
  EXPECT_EQ(same.ties, 10);
  EXPECT_EQ(same.p, 1.0);
}

}  // namespace g4
