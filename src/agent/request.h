// Chat requests as the library sees them, parsed from the OpenAI and Ollama JSON bodies by pure
// functions (no server, no model): the conversation with its tool calls and tool results, the
// declared tools, the tool choice and the thinking switch. The server's handlers call these;
// unit tests and a fuzz target call them directly. Sampling fields stay with the server.
//
// Every malformed field throws RequestError naming it (param), so a bad request is a 400 that
// says what is wrong and nothing reaches the model.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace g4 {

using ojson = nlohmann::ordered_json;  // key order kept (schemas, arguments)

struct RequestError {
  std::string message;
  std::string param;
  std::string code = "invalid_value";
};

struct ToolDef {
  std::string name;
  std::string description;
  ojson parameters;  // a JSON Schema for the arguments object ({"type": "object", ...})
};

enum class ToolChoice { kAuto, kNone, kRequired, kNamed };

// What the model is asked to do besides writing text.
struct AgentOptions {
  std::vector<ToolDef> tools;
  ToolChoice tool_choice = ToolChoice::kAuto;  // with no tools: no calls whatever this says
  std::string tool_name;                       // kNamed: the function that must be called
  bool parallel_tool_calls = true;             // false: at most one call per answer
  bool thinking = false;                       // Gemma 4's thought channel before the answer
  int thinking_budget = -1;                    // most tokens inside the channel; -1: no cap

  bool calls_possible() const { return !tools.empty() && tool_choice != ToolChoice::kNone; }
};

struct ChatRequest {
  // Normalized OpenAI-style messages: role (system | user | assistant | tool), content (a
  // string), assistant tool_calls [{id, type: "function", function: {name, arguments: object}}]
  // and reasoning_content, tool messages' tool_call_id and name. The chat formats render these.
  ojson messages = ojson::array();
  AgentOptions agent;
};

// /v1/chat/completions: messages, tools, tool_choice, parallel_tool_calls and the thinking
// switches (reasoning_effort other than "none", chat_template_kwargs.enable_thinking, or g4's
// `think`; `thinking_budget`). Legacy `functions`/`function_call` are refused.
ChatRequest parse_openai_chat(const ojson& body);

// /api/chat: messages (tool_calls with object arguments, role "tool" with tool_name), tools,
// think (true/false; "low"/"medium"/"high" mean true); g4's extensions tool_choice,
// parallel_tool_calls (as OpenAI's) and thinking_budget.
ChatRequest parse_ollama_chat(const ojson& body);

// Checks shared by both: declared tools (names unique, [A-Za-z0-9_.-]{1,64}, parameters an
// object schema), tool_choice naming a declared tool, and every tool result answering a call
// made earlier in the conversation.
void check_agent_request(const ChatRequest& r);

}  // namespace g4
