// libFuzzer target for what an agent request reaches before and after the model: request
// parsing (agent/request: OpenAI and Ollama bodies), prompt rendering and the tool-call
// constraint for both chat formats (compiled against a toy vocabulary), and the streaming
// output parsers with Gemma 4's argument dialect. The first byte picks the path; for the
// parsers, the next byte sets how the text is cut into pieces. Any outcome is fine except a
// crash, a sanitizer report or a hang.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../unit/toy_vocab.h"
#include "agent/chat_format.h"
#include "agent/request.h"
#include "constrain/grammar.h"
#include "tokenizer/tokenizer.h"

namespace {

const g4::Tokenizer& toy() {
  static const g4::Tokenizer t =
      g4::toy_vocab({"<eos>", "{", "}", "\"", ":", ",", "[", "]", " ", "<|tool_call>",
                     "<tool_call|>", "<|\"|>", "call:", "name"});
  return t;
}

void request(const std::string& text, bool ollama) {
  const g4::ojson body = g4::ojson::parse(text, nullptr, false);
  if (body.is_discarded()) return;
  g4::ChatRequest r;
  try {
    r = ollama ? g4::parse_ollama_chat(body) : g4::parse_openai_chat(body);
  } catch (const g4::RequestError&) {
    return;
  }
  static g4::ConstraintCompiler cc(toy(), toy().size());
  for (g4::ChatFormat f : {g4::ChatFormat::kGemma3, g4::ChatFormat::kGemma4}) {
    (void)g4::render_agent_chat(f, r);
    auto spec = g4::agent_constraint(f, r.agent, std::nullopt);
    if (spec.ok() && spec.value() && spec.value()->text.size() < 4096)
      (void)cc.compile(*spec.value());
  }
}

void parse_output(const std::string& text, g4::ChatFormat f, size_t piece) {
  g4::AgentOptions a;
  a.tools.push_back({"get_weather", "", {{"type", "object"}}});
  a.tools.push_back({"f", "", {{"type", "object"}}});
  auto p = g4::make_output_parser(f, a, "c");
  for (size_t at = 0; at < text.size(); at += piece)
    (void)p->push(std::string_view(text).substr(at, piece));
  (void)p->finish();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2 || size > 8192) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 2, size - 2);
  switch (data[0] % 5) {
    case 0:
      request(text, false);
      break;
    case 1:
      request(text, true);
      break;
    case 2:
      parse_output(text, g4::ChatFormat::kGemma4, 1 + data[1] % 16);
      break;
    case 3:
      parse_output(text, g4::ChatFormat::kGemma3, 1 + data[1] % 16);
      break;
    case 4:
      (void)g4::parse_gemma4_arguments(text);
      break;
  }
  return 0;
}
