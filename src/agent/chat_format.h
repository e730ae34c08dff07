// Tool calls and thinking in each model family's own format: the prompt for a ChatRequest
// (declared tools, earlier calls and results), the constraint that makes every call name a
// declared tool with arguments valid against its schema, and the parser that splits the output
// into reasoning, answer text and tool calls as it streams.
//
// Gemma 4 (gemma-architecture.md §5.2): tools are declared in the system turn by the official
// template (chat_gemma4.cc); the model writes <|channel>thought\n...<channel|> when thinking,
// then text and/or <|tool_call>call:NAME{key:value,...}<tool_call|> (strings between <|"|>
// tokens, bare keys), and ends with <|tool_response>. Calls are constrained from their first
// marker on (XGrammar's Gemma argument converter), to the named tool when one is required.
//
// Gemma 3 has no tool tokens. g4 uses the JSON convention of Google's Gemma 3 function-calling
// guide: the declarations go into the system text, and the model answers a call with one line
// {"name": "NAME", "parameters": {...}} per call and no other text; results come back as a user
// turn with one ```tool_output block per result. docs/ARCHITECTURE.md "Agents" has the exact text.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/request.h"
#include "constrain/grammar.h"
#include "core/status.h"
#include "tokenizer/chat_template.h"

namespace g4 {

class Tokenizer;

struct ToolCall {
  std::string id;
  std::string name;
  ojson arguments;  // an object
};

// What a stretch of output turned out to be.
struct OutputDelta {
  std::string reasoning;        // inside the thought channel
  std::string content;          // the answer's text
  std::vector<ToolCall> calls;  // calls completed in this stretch, in order
  bool empty() const { return reasoning.empty() && content.empty() && calls.empty(); }
};

inline void append_delta(OutputDelta& to, OutputDelta&& d) {
  to.reasoning += d.reasoning;
  to.content += d.content;
  for (auto& c : d.calls) to.calls.push_back(std::move(c));
}

// Splits generated text (control markers visible: GenerateOptions::show_control) as it
// arrives. Text that may still turn into a marker is held back until it is decided; a call is
// reported once it is complete. Whitespace between calls is not content.
class OutputParser {
 public:
  virtual ~OutputParser() = default;
  virtual OutputDelta push(std::string_view text) = 0;
  // The output ended: what was held back (an unfinished call becomes text: it was not a call).
  virtual OutputDelta finish() = 0;
};

// The prompt (ids with <bos>, or text for tests) for a request in the model's format.
Result<std::vector<int32_t>> encode_agent_chat(ChatFormat fmt, const Tokenizer& tok,
                                               const ChatRequest& r);
Result<std::string> render_agent_chat(ChatFormat fmt, const ChatRequest& r);

// The constraint for the answer: tool calls when they are possible (combined with the
// response_format, json_object or json_schema, when both are given: calls or that JSON), or the
// response_format alone; nullopt when nothing constrains the answer. Errors name the tool
// whose schema cannot be enforced.
Result<std::optional<ConstraintSpec>> agent_constraint(
    ChatFormat fmt, const AgentOptions& a, const std::optional<ConstraintSpec>& response);

// A parser for one answer; call ids are id_prefix + the call's index.
std::unique_ptr<OutputParser> make_output_parser(ChatFormat fmt, const AgentOptions& a,
                                                 std::string id_prefix);

// Gemma 4's argument dialect -> JSON: {key:value,...} with <|"|>-quoted raw strings, bare or
// quoted keys, numbers, true/false/null, [lists]. Errors say where the text stopped parsing.
Result<ojson> parse_gemma4_arguments(std::string_view text);

}  // namespace g4
