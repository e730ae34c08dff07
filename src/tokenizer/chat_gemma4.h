// Gemma 4 chat template (ref: gemma-architecture.md §5.2; the official Jinja template is
// ../shared/testdata/gemma4/chat-template-31B-it.jinja). A C++ transcription of that template:
// system turn (system/developer first message, <|think|> when thinking is enabled, tool
// declarations), user/model turns, media placeholders, historical thinking stripped, tool calls
// and tool responses (OpenAI-style role:"tool" messages and Gemma's tool_responses), and the
// generation prompt (with the empty thought channel when thinking is off). Strings are
// identical to jinja2's rendering (tests/golden/chat_gemma4.json).
//
// Messages and tools are OpenAI-style JSON; ordered_json keeps key order, which decides ties in
// the template's case-insensitive dictsort. Known differences from jinja2: only ASCII letters
// are case-folded (dictsort, upper); a float prints as nlohmann writes it (Python's repr for
// ordinary values). Inputs that make jinja2 raise give an error.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/status.h"
#include "tokenizer/tokenizer.h"

namespace g4 {

struct Gemma4ChatOptions {
  bool add_generation_prompt = true;
  bool enable_thinking = false;
};

// The rendered prompt text (special tokens written literally, starting with <bos>).
Result<std::string> render_gemma4(const nlohmann::ordered_json& messages,
                                  const nlohmann::ordered_json& tools,
                                  const Gemma4ChatOptions& opt);

// The same prompt as ids. Template markup may produce special tokens; message content, tool
// names/arguments and responses are tokenized with parse_special = false (user text cannot
// forge a turn marker), while BPE still runs across the joins (Tokenizer::encode_segments).
Result<std::vector<int32_t>> encode_gemma4_chat(const Tokenizer& tok,
                                                const nlohmann::ordered_json& messages,
                                                const nlohmann::ordered_json& tools,
                                                const Gemma4ChatOptions& opt);

}  // namespace g4
