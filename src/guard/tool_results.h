// Prompt-injection screening of the tool results in a chat request (guard/injection.h's
// heuristics applied where untrusted text enters a conversation). The chat templates already
// tokenize every message's text with special-token parsing off, so a literal "<end_of_turn>"
// in a tool result cannot close a turn; this adds the detector's findings and its action.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "guard/injection.h"

namespace g4 {

// Tool results in OpenAI-style messages as the request parser normalizes them: the content of
// every role "tool" message (a string, or text parts) and, in Gemma 4's own format, every
// string inside a message's "tool_responses"[].response. Each is screened and, for
// strip/datamark, replaced by the screened text in place. Returns one entry per tool result
// that had findings.
struct ToolResultScreen {
  size_t message = 0;  // index into messages
  std::string name;    // the tool's name when the message gives one
  std::vector<InjectionFinding> findings;
};
std::vector<ToolResultScreen> screen_tool_results(nlohmann::ordered_json& messages,
                                                  InjectionAction action);

// Number of tool results in messages (what screen_tool_results looks at).
size_t count_tool_results(const nlohmann::ordered_json& messages);

// "flag" | "strip" | "datamark" -> action; false for anything else ("off" is the caller's).
bool parse_injection_action(std::string_view s, InjectionAction* a);

}  // namespace g4
