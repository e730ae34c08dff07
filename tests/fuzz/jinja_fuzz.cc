// libFuzzer target for the Jinja subset (src/tokenizer/jinja.*): the input is a template, up to
// an optional NUL byte; what follows the NUL is the content of the messages it renders (so
// seeds can be real chat templates and the fuzzer also varies the text). Any outcome is fine
// except a crash, a sanitizer report, an exception escaping, a hang or unbounded memory: errors
// must come back as Status, and the limits below bound the work.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "tokenizer/jinja.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t nul = in.find('\0');
  const std::string_view src = in.substr(0, nul);
  const std::string content(nul == std::string_view::npos ? "Hello!" : in.substr(nul + 1));
  g4::jinja::Limits lim;
  lim.max_output = 1 << 16;
  lim.max_steps = 20000;
  lim.max_depth = 64;
  auto t = g4::jinja::Template::parse(src, lim);
  if (!t.ok()) return 0;
  using J = g4::jinja::Json;
  J ctx = J::object();
  ctx["bos_token"] = "<bos>";
  ctx["eos_token"] = "<eos>";
  ctx["add_generation_prompt"] = true;
  ctx["guideline"] = content;
  ctx["messages"] = J::array(
      {J{{"role", "system"}, {"content", content}}, J{{"role", "user"}, {"content", content}},
       J{{"role", "assistant"},
         {"content", J::array({J{{"type", "text"}, {"text", content}}})},
         {"tool_calls",
          J::array({J{{"function",
                       J{{"name", "f"},
                         {"arguments", J{{"a", 1}, {"b", J::array({1.5, nullptr, true})}}}}}}})}}});
  ctx["tools"] =
      J::array({J{{"type", "function"},
                  {"function", J{{"name", "f"},
                                 {"description", content},
                                 {"parameters", J{{"type", "object"},
                                                  {"properties", J{{"a", J{{"type", "integer"}}}}},
                                                  {"required", J::array({"a"})}}}}}}});
  (void)t.value().render(ctx);
  return 0;
}
