// The Jinja subset (src/tokenizer/jinja.*) against Python's jinja2 configured as transformers'
// apply_chat_template configures it (tests/unit/data/gen_jinja_fixture.py): the real Gemma 3 and
// Gemma 4 chat templates, ShieldGemma-style guard templates and single-feature templates, byte
// for byte; error cases must be errors. Plus limits and errors jinja2 has no twin for.
#include "tokenizer/jinja.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace g4 {
namespace {

using jinja::Json;

Json fixture() {
  std::ifstream in(std::string(G4_SOURCE_DIR) + "/tests/unit/data/jinja_expected.json");
  EXPECT_TRUE(in.good());
  return Json::parse(in);
}

TEST(Jinja, MatchesPythonJinja2) {
  const Json fx = fixture();
  int rendered = 0, errors = 0;
  for (const Json& c : fx["cases"]) {
    const std::string tname = c["template"];
    const std::string what = tname + "/" + c["name"].get<std::string>();
    auto t = jinja::Template::parse(fx["templates"][tname].get<std::string>());
    if (c.contains("error")) {
      Result<std::string> r =
          t.ok() ? t.value().render(c["context"]) : Result<std::string>(t.status());
      EXPECT_FALSE(r.ok()) << what << " rendered: " << (r.ok() ? r.value() : "");
      if (!r.ok() && tname.rfind("err_", 0) != 0) {
        // raise_exception in a real template: its message reaches the caller.
        EXPECT_NE(r.error().find(c["error"].get<std::string>()), std::string::npos)
            << what << ": " << r.error();
      }
      if (tname == "err_raise") {
        EXPECT_NE(r.error().find("custom failure text"), std::string::npos) << r.error();
      }
      ++errors;
      continue;
    }
    ASSERT_TRUE(t.ok()) << what << ": " << t.error();
    Result<std::string> r = t.value().render(c["context"]);
    ASSERT_TRUE(r.ok()) << what << ": " << r.error();
    EXPECT_EQ(r.value(), c["expected"].get<std::string>()) << what;
    ++rendered;
  }
  EXPECT_GE(rendered, 40);
  EXPECT_GE(errors, 10);
}

TEST(Jinja, SyntaxErrorsNameLineAndColumn) {
  auto t = jinja::Template::parse("line one\n{% if x %}\n  {{ 1 + }}\n{% endif %}");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.error().find("line 3, column"), std::string::npos) << t.error();
  auto u = jinja::Template::parse("{% for x in y %}never closed");
  ASSERT_FALSE(u.ok());
  EXPECT_NE(u.error().find("endfor"), std::string::npos) << u.error();
}

TEST(Jinja, LimitsBoundWork) {
  jinja::Limits lim;
  lim.max_output = 1000;
  lim.max_steps = 10000;
  lim.max_depth = 50;
  auto render = [&](const std::string& src) { return jinja::render(src, Json::object(), lim); };
  EXPECT_FALSE(render("{% for i in range(100000) %}x{% endfor %}").ok());  // steps
  EXPECT_FALSE(render("{% for i in range(900) %}xx{% endfor %}").ok());    // output
  EXPECT_FALSE(render("{% set s = 'a' %}{% for i in range(40) %}{% set s = s ~ s %}{% endfor %}")
                   .ok());  // one value past the output limit
  EXPECT_FALSE(render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").ok());  // depth
  EXPECT_FALSE(render(std::string(500, '(') + "1" + std::string(500, ')')).ok());
  EXPECT_FALSE(render("{{ " + std::string(300, '[') + " }}").ok());
  EXPECT_FALSE(render("{{ 'ab' * 100000000000 }}").ok());
  EXPECT_FALSE(render("{{ 9223372036854775807 + 1 }}").ok());
  EXPECT_TRUE(render("{% for i in range(10) %}{{ i }}{% endfor %}").ok());
  // Output held by callers counts: nested macros cannot each hold max_output.
  EXPECT_FALSE(render("{% macro f(n) %}{{ 'x' * 600 }}{% if n %}{{ f(n - 1) }}{% endif %}"
                      "{% endmacro %}{{ f(3) }}")
                   .ok());
  // Values nest at most 300 deep (destruction and printing recurse).
  EXPECT_FALSE(jinja::render("{% set ns = namespace(x=[]) %}{% for i in range(400) %}"
                             "{% set ns.x = [ns.x] %}{% endfor %}",
                             Json::object())
                   .ok());
  // Lists grow under the same budget as strings, counted with their contents.
  EXPECT_FALSE(render("{% set ns = namespace(l=['" + std::string(100, 'a') +
                      "']) %}{% for i in range(20) %}{% set ns.l = ns.l + ns.l %}{% endfor %}")
                   .ok());
  // A namespace cannot be stored in a namespace (no reference cycles).
  EXPECT_FALSE(render("{% set ns = namespace(a=1) %}{% set ns.me = [ns] %}").ok());
}

TEST(Jinja, ErrorsAreValues) {
  for (const char* src : {"{{ x.y.z }}",
                          "{{ 1 / 0 }}",
                          "{{ [] | frob }}",
                          "{{ 1 is frob }}",
                          "{% set ns.a = 1 %}",
                          "{{ range(1, 2, 0) }}",
                          "{{ 'a'[1:2:0] }}",
                          "{{ namespace(1) }}",
                          "{% break %}",
                          "{{ }}",
                          "{% endif %}",
                          "{{ 'a' < 1 }}",
                          "{{ (1 }}",
                          "{{ {1: 2} }}",
                          "{{ raise_exception() }}",
                          "{#",
                          "{{ \"\\x4\" }}",
                          "{{ undefined_fn() }}",
                          "{{ 'x'.nope() }}",
                          "{% for a, b in [1] %}{% endfor %}"}) {
    auto r = jinja::render(src, Json::object());
    EXPECT_FALSE(r.ok()) << src;
  }
}

TEST(Jinja, UsesVariable) {
  auto t = jinja::Template::parse("{{ bos_token }}{% if guideline %}{{ guideline }}{% endif %}");
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(t.value().uses_variable("guideline"));
  EXPECT_FALSE(t.value().uses_variable("messages"));
}

}  // namespace
}  // namespace g4
