// The guard's built-in template strings and window sizes as tests/unit/data/guard_expected.json
// records them (the fixture script's compact template), shared by guard_test and
// guard_template_test.
#pragma once
#include <nlohmann/json.hpp>

#include "guard/guard.h"

namespace g4::test {

inline GuardOptions guard_fixture_options(const nlohmann::json& fx) {
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

}  // namespace g4::test
