// constrain/: the schema checks and rewrites (no model), and constraints compiled on a toy
// vocabulary driving a Sequence: only outputs the constraint accepts, ending at end of turn.
#include <gtest/gtest.h>

#include <regex>

#include <nlohmann/json.hpp>

#include "constrain/grammar.h"
#include "constrain/schema_check.h"
#include "g4/engine.h"
#include "tokenizer/tokenizer.h"
#include "toy_vocab.h"

namespace g4 {
namespace {

std::string err(const std::string& schema) {
  auto r = prepare_json_schema(schema);
  return r.ok() ? "" : r.error();
}

TEST(SchemaCheck, RefusesWhatCannotBeEnforcedByName) {
  EXPECT_NE(err(R"({"type":"array","uniqueItems":true})").find("'uniqueItems'"), std::string::npos);
  EXPECT_NE(err(R"({"properties":{"a":{"not":{}}}})")
                .find("'not' (g4 cannot enforce it) at "
                      "$.properties.a"),
            std::string::npos);
  EXPECT_NE(err(R"({"type":"string","format":"credit-card"})").find("'credit-card'"),
            std::string::npos);
  EXPECT_NE(err(R"({"type":"string","pattern":"a+","maxLength":3})").find("beside 'pattern'"),
            std::string::npos);
  EXPECT_NE(err(R"({"type":"number","multipleOf":0.5})").find("integers only"), std::string::npos);
  EXPECT_NE(err(R"({"$ref":"http://x/y.json"})").find("only local"), std::string::npos);
  EXPECT_NE(err(R"({"type":"strnig"})").find("'type' must be"), std::string::npos);
  EXPECT_NE(err("{").find("not valid JSON"), std::string::npos);
}

TEST(SchemaCheck, BoundsSchemaBombs) {
  std::string deep = R"({"type":"string"})";
  for (int i = 0; i < 100; ++i) deep = R"({"type":"array","items":)" + deep + "}";
  EXPECT_NE(err(deep).find("deeper than 64"), std::string::npos);
  std::string e = R"({"enum":[)";
  for (int i = 0; i < 5000; ++i) e += (i ? "," : "") + std::to_string(i);
  EXPECT_NE(err(e + "]}").find("more than 4096 values"), std::string::npos);
  EXPECT_NE(err(R"({"type":"array","minItems":100000})").find("above 4096"), std::string::npos);
  EXPECT_FALSE(check_regex("(a{1,5000})").ok());
  EXPECT_FALSE(check_regex(std::string(100, '(') + std::string(100, ')')).ok());
  EXPECT_TRUE(check_regex("[a-z]{1,10}@(com|org)").ok());
}

TEST(SchemaCheck, RewritesKeepOrderMergeAllOfAndPinIpv4) {
  auto r = prepare_json_schema(
      R"({"allOf":[{"type":"object","properties":{"z":{"type":"string","format":"ipv4"}},)"
      R"("required":["z"]},{"properties":{"a":{"type":"integer"}},"required":["a"]}]})");
  ASSERT_TRUE(r.ok()) << r.error();
  const auto j = nlohmann::ordered_json::parse(r.value());
  EXPECT_EQ(j["type"], "object");
  EXPECT_FALSE(j.contains("allOf"));
  ASSERT_EQ(j["properties"].size(), 2u);
  EXPECT_EQ(j["properties"].begin().key(), "z");  // the schema's order, not sorted
  EXPECT_FALSE(j["properties"]["z"].contains("format"));
  EXPECT_TRUE(j["properties"]["z"].contains("pattern"));
  EXPECT_EQ(j["required"], (nlohmann::ordered_json{"z", "a"}));
  EXPECT_NE(err(R"({"allOf":[{"properties":{"a":{}}},{"properties":{"a":{}}}]})")
                .find("both define property 'a'"),
            std::string::npos);
  EXPECT_NE(err(R"({"allOf":[{"type":"string"}]})").find("plain object schemas"),
            std::string::npos);
}

TEST(SchemaCheck, DateAndTimeFormatsBecomeValidatorExactPatterns) {
  auto r = prepare_json_schema(
      R"({"type":"object","properties":{"d":{"type":"string","format":"date"},)"
      R"("t":{"type":"string","format":"time"},"dt":{"type":"string","format":"date-time"}}})");
  ASSERT_TRUE(r.ok()) << r.error();
  const auto j = nlohmann::ordered_json::parse(r.value());
  auto match = [&](const char* prop, const std::string& s) {
    return std::regex_match(s, std::regex(j["properties"][prop]["pattern"].get<std::string>()));
  };
  for (const char* ok : {"0001-01-01", "2024-12-31", "1999-04-30", "2023-02-28"})
    EXPECT_TRUE(match("d", ok)) << ok;
  for (const char* bad : {"0000-01-10", "2023-02-30", "2023-04-31", "2023-13-01", "2023-00-10"})
    EXPECT_FALSE(match("d", bad)) << bad;
  EXPECT_TRUE(match("t", "23:59:60.123456789+05:30"));
  EXPECT_FALSE(match("t", "12:00:00.1234567890Z"));  // 10 fractional digits
  EXPECT_TRUE(match("dt", "2024-02-28T14:59:22.3-08:00"));
  EXPECT_FALSE(match("dt", "0000-01-10T14:59:22.300000000-08:00"));
  // "?" after a group becomes "{0,1}" (an XGrammar bug in JSON-string patterns), nowhere else.
  auto p = prepare_json_schema(R"({"type":"string","pattern":"^a(\\.\\d{1,3})?[)?]\\)?(b)??Z$"})");
  ASSERT_TRUE(p.ok()) << p.error();
  EXPECT_EQ(nlohmann::json::parse(p.value())["pattern"], "^a(\\.\\d{1,3}){0,1}[)?]\\)?(b)??Z$");
}

// ids: 0 <eos>, 1 "{", 2 "}", 3 "\"", 4 ":", 5 "a", 6 "1", 7 "2", 8 "ab", then bytes.
Tokenizer toy() {
  return toy_vocab({"<eos>", "{", "}", "\"", ":", "a", "1", "2", "ab"});
}

// Greedy over logits that always prefer the same wrong tokens: the mask alone must keep the
// output valid, and generation must end at the constraint's end.
std::string run(const Tokenizer& tk, ConstraintSpec spec, int max_tokens = 50) {
  ConstraintCompiler cc(tk, tk.size());
  auto c = cc.compile(spec);
  EXPECT_TRUE(c.ok()) << c.error();
  if (!c.ok()) return "";
  GenerateOptions g;
  g.sampling.temperature = 0;
  g.max_tokens = max_tokens;
  g.constraint = c.value();
  g.stop_at_eog = false;  // a constraint ends generation at end of turn regardless
  Sequence seq(tk, tk.size(), g);
  std::vector<float> logits(size_t(tk.size()));
  for (int i = 0; i < max_tokens; ++i) {
    for (int v = 0; v < tk.size(); ++v) logits[size_t(v)] = float((v * 37) % 11);  // arbitrary
    const TokenOutcome o = seq.next(logits.data(), i, 1000);
    if (!o.finish.empty()) {
      EXPECT_EQ(o.finish, "stop");
      break;
    }
  }
  return seq.text() + seq.flush();
}

TEST(Constraint, MaskKeepsGreedyOutputValid) {
  const Tokenizer tk = toy();
  EXPECT_EQ(run(tk, {ConstraintSpec::Kind::kChoice, "", {"a1", "21"}}).size(), 2u);
  const std::string re = run(tk, {ConstraintSpec::Kind::kRegex, "a[12]{2,3}", {}});
  EXPECT_TRUE(re == "a11" || re == "a12" || re == "a21" || re == "a22" || re.size() == 4) << re;
  const std::string js =
      run(tk, {ConstraintSpec::Kind::kJsonSchema,
               R"({"type":"object","properties":{"a":{"enum":[1,2]}},"required":["a"],)"
               R"("additionalProperties":false})",
               {}});
  EXPECT_TRUE(js == R"({"a":1})" || js == R"({"a":2})" || js == R"({"a": 1})" ||
              js == R"({"a": 2})")
      << js;
  const std::string gb =
      run(tk, {ConstraintSpec::Kind::kGrammar, "root ::= \"{\" [a12]{1,3} \"}\"", {}});
  EXPECT_EQ(gb.front(), '{');
  EXPECT_EQ(gb.back(), '}');
}

TEST(Constraint, BadConstraintsAreErrors) {
  const Tokenizer tk = toy();
  ConstraintCompiler cc(tk, tk.size());
  EXPECT_NE(cc.compile({ConstraintSpec::Kind::kRegex, "(ab", {}}).error().find("invalid regex"),
            std::string::npos);
  EXPECT_NE(
      cc.compile({ConstraintSpec::Kind::kGrammar, "root ::= ", {}}).error().find("invalid grammar"),
      std::string::npos);
  EXPECT_FALSE(cc.compile({ConstraintSpec::Kind::kChoice, "", {}}).ok());
  EXPECT_FALSE(cc.compile({ConstraintSpec::Kind::kJsonSchema, R"({"$ref":"#/$defs/x"})", {}}).ok());
}

}  // namespace
}  // namespace g4
