// Helpers shared by the OpenAI and Ollama handlers: typed field access that turns every
// malformed field into an ApiError naming it, and the streaming loop over SeqHandles.
#pragma once
#include <httplib.h>

#include <functional>
#include <string>
#include <vector>

#include "agent/chat_format.h"
#include "constrain/grammar.h"
#include "server/api.h"

namespace g4::server {

json parse_body(const httplib::Request& req);  // throws ApiError

// Optional typed fields; absent or null -> false (out untouched). Wrong type/range -> ApiError.
bool get_number(const json& j, const char* key, double lo, double hi, double* out);
bool get_int(const json& j, const char* key, int64_t lo, int64_t hi, int64_t* out);
bool get_bool(const json& j, const char* key, bool* out);
bool get_string(const json& j, const char* key, std::string* out);
// A string or an array of up to `max` strings (OpenAI `stop`).
bool get_stop(const json& j, const char* key, std::vector<std::string>* out);
// Messages with string content or an array of {type: text, text} parts.
std::vector<ChatMessage> get_messages(const json& j, const char* key);
// The model named by the request must be the one served (or "default").
void check_model(const ServerState& st, const json& j, bool required);
// Compiles a constraint for the served model; a bad one is a 400 naming `param` and the
// problem (unsupported schema keyword, regex or grammar error, limit).
std::shared_ptr<const CompiledConstraint> compile_constraint(ServerState& st,
                                                             const ConstraintSpec& spec,
                                                             const std::string& param);
// OpenAI response_format (text | json_object | json_schema {name, schema, strict}) and g4's
// extras `regex`, `choice` (array of strings), `grammar` (GBNF): the constraint, or nullptr.
std::shared_ptr<const CompiledConstraint> openai_constraint(ServerState& st, const json& j);
// The same, not yet compiled: (the parameter that asked, the spec), or nullopt.
using AskedConstraint = std::pair<std::string, ConstraintSpec>;
std::optional<AskedConstraint> openai_constraint_spec(const json& j);
// Ollama's format: "json" or a JSON Schema object.
std::optional<AskedConstraint> ollama_format_spec(const json& j);

// A chat request parsed by the library (agent/request.h); its errors become 400s.
ChatRequest parse_chat_request(const json& j, bool ollama);
// How one chat answer is produced and read: the model's chat format, the tools and thinking
// asked for, the compiled constraint (tool calls and/or the response format) and whether the
// output goes through an OutputParser (Gemma 4 always: its thought channel; Gemma 3 when calls
// are possible).
struct AgentPlan {
  ChatFormat fmt = ChatFormat::kGemma3;
  AgentOptions agent;
  std::shared_ptr<const CompiledConstraint> constraint;
  bool parse = false;
};
// Builds the plan and the prompt; 400 for what the model cannot do or a schema g4 cannot enforce.
std::shared_ptr<AgentPlan> plan_agent(ServerState& st, const ChatRequest& cr,
                                      const std::optional<AskedConstraint>& response,
                                      std::vector<int32_t>* prompt);
// The plan's constraint, thought channel and marker display in the generation options.
void apply_plan(const AgentPlan& p, const Tokenizer& tok, GenerateOptions& g);
// OpenAI tool_calls entries (arguments as a JSON string) and Ollama's (arguments an object).
json openai_tool_calls(const std::vector<ToolCall>& calls);
json ollama_tool_calls(const std::vector<ToolCall>& calls);
// OpenAI's logit_bias: {"token id": bias in [-100, 100]} -> pairs (400 on anything else).
std::vector<std::pair<int32_t, float>> parse_logit_bias(const json& j, int n_tokens);
// Refuses a present, non-default field that g4 does not implement.
void refuse_if_set(const json& j, const char* key, const char* why);

// Submits one sequence per request; throws ApiError (400/429/503) when refused.
std::vector<std::shared_ptr<SeqHandle>> submit_all(ServerState& st,
                                                   const std::vector<SeqRequest>& reqs);

// Drains the handles in arrival order. on_event(choice, event); returns false when the
// callback wants to stop (client gone): the remaining sequences are cancelled. on_idle runs
// after each second without events (a keep-alive write that also detects a gone client).
// on_batch(choice, finished) runs after each batch of a choice's events (the output guard's
// checks); false stops as on_event does.
bool drain(const std::vector<std::shared_ptr<SeqHandle>>& hs,
           const std::function<bool(size_t, const SeqEvent&)>& on_event,
           std::vector<SeqSummary>* summaries, const std::function<bool()>& on_idle = {},
           const std::function<bool(size_t, bool)>& on_batch = {});

// Non-streamed answers. The body exists only when every sequence has finished, and a client
// that leaves before then would go unnoticed. So each sequence's first event (or end) is
// awaited first (errors of admission and prefill keep their own status); if generation goes
// on, the answer is a 200 with a chunked body that is one space per second while the
// sequences run (JSON allows leading whitespace; a failed write cancels them), then the JSON.
// on_event collects; body(summaries) builds the JSON and throws ApiError for a failed
// sequence, which after the 200 can only be reported in the body (error_json).
// guard (optional): output checks; on_event then sees only events whose text passed.
void respond_collected(ServerState& st, httplib::Response& res,
                       std::vector<std::shared_ptr<SeqHandle>> hs,
                       std::function<void(size_t, const SeqEvent&)> on_event,
                       std::function<json(const std::vector<SeqSummary>&)> body, bool ollama,
                       std::shared_ptr<OutputGuard> guard = nullptr);
// For set_chunked_content_provider: cancels the sequences unless the body was sent to the
// end (also when the client left before the headers and the provider never ran).
httplib::ContentProviderResourceReleaser cancel_unless_sent(
    std::vector<std::shared_ptr<SeqHandle>> hs);
// An error's body: OpenAI's {"error": {message, type, param, code}} or Ollama's {"error": m}.
json error_json(const ApiError& e, bool ollama);
// A sequence the scheduler cut short because the server is stopping (SIGTERM past
// --shutdown-grace). Streams report it as an error event plus finish/done reason "length";
// non-streamed answers as this 503 error (in the body if the 200 already went out).
bool cut_by_shutdown(const SeqSummary& s);
ApiError shutdown_error(const SeqSummary& s);

void send_json(httplib::Response& res, int status, const json& j);
std::string random_id(const char* prefix);
std::string iso_time_now();
double unix_now();

}  // namespace g4::server
