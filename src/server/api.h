// HTTP front end of `g4 serve`: OpenAI- and Ollama-compatible endpoints over the scheduler.
// Request parsing is strict: wrong types, out-of-range values and parameters that would
// change results but are not implemented are refused with a 4xx and an error body, never
// ignored silently (ref: docs/ARCHITECTURE.md, "Server").
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "g4/engine.h"
#include "guard/guard.h"
#include "guard/tool_results.h"
#include "server/metrics.h"
#include "server/scheduler.h"

namespace httplib {
class Server;
}

namespace g4::server {

using json =
    nlohmann::ordered_json;  // keeps key order: a JSON schema's property order is the output's

struct ApiError {
  ApiError(int s, std::string m, std::string p = "", std::string c = "",
           std::string t = "invalid_request_error")
      : status(s),
        message(std::move(m)),
        param(std::move(p)),
        code(std::move(c)),
        type(std::move(t)) {}
  int status = 400;
  std::string message;
  std::string param;
  std::string code;
  std::string type;
};

struct ServeOptions {
  std::string model_path;
  std::string host = "127.0.0.1";
  int port = 8080;
  int parallel = 4;
  int64_t ctx = 4096;
  int threads = 0;
  int max_queue = 64;
  std::string api_key;
  size_t max_body_bytes = 4 << 20;
  int max_n = 8;                 // most choices per request
  double shutdown_grace = 10.0;  // seconds in-flight requests get after SIGTERM
  int64_t ring_slack = 0;
  int64_t kv_pool_tokens = 0;  // global-layer KV positions for all slots (0 = parallel * ctx)
  bool exact = false;
  SparseAttentionOptions sparse;
  // Safety guard: a classifier checkpoint (or the serving model's file, guard_self), and the
  // risk profile whose presence turns on the input check of chat requests.
  std::string guard_model;
  bool guard_self = false;
  std::string guard_profile;
  bool guard_allow_relax = false;            // requests may loosen the profile
  std::string guard_tool_results = "strip";  // off | flag | strip | datamark
  double guard_tool_threshold = -1;          // >= 0: model-based check of tool results
  std::string guard_template;                // Jinja file: the guard's prompt template
  std::string kv_type = "f16";
};

// Shared state of the running server. The engine and scheduler appear once loading is done.
struct ServerState {
  ServeOptions opts;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<Scheduler> sched;
  ServerMetrics metrics;
  std::string model_id;  // name clients use (file name without .gguf)
  std::atomic<bool> ready{false};
  std::atomic<bool> draining{false};
  double created = 0;  // unix time the model finished loading
  // Safety guard (own Engine; set before `ready`). guard_input: chat prompts are checked.
  std::unique_ptr<Guard> guard;
  RiskProfile guard_profile;
  bool guard_input = false;
  std::string guard_model_id;
  // Prompt-injection screening of tool results (no model needed): off, or the action.
  bool tool_screen = true;
  InjectionAction tool_action = InjectionAction::kStrip;
  // Model-based check of tool results (--guard-tool-threshold): the guard scores each one
  // under this profile's single prompt-injection policy (reported, never rewritten).
  bool tool_model = false;
  RiskProfile tool_profile;
};

// Serialises with invalid UTF-8 replaced (model output may split a character at the end).
std::string dump(const json& j);

// Routes (all of them: OpenAI, Ollama, health, metrics, page).
void register_routes(httplib::Server& svr, ServerState& st);

// Model-specific prompt building shared by the API flavours.
Result<std::vector<int32_t>> chat_prompt(const Engine& e, const std::vector<ChatMessage>& msgs);

// ---- The safety guard in requests (guard_api.cc) ----

// What the guard does for one request: the operator's profile, or the request's "guard"
// extension applied over it (only stricter unless --guard-allow-relax; 400 naming the field).
struct RequestGuard {
  bool input = false;   // the prompt is checked before anything is queued
  bool output = false;  // the answer is checked as it is generated
  RiskProfile profile;
};
RequestGuard request_guard(ServerState& st, const json& body);

// The text a chat request adds: its last user message ("" when none).
std::string last_user_text(const json& messages);

// Input check: throws ApiError 400 `content_filter` naming the policy when `text` is flagged
// (Ollama's handlers turn it into {"error": ...} with the same status).
void guard_input(ServerState& st, const RequestGuard& g, const std::string& text,
                 const char* param);

// Tool results screened for prompt injection (--guard-tool-results): rewrites them in place
// for strip/datamark, counts them in /metrics; returns the findings for the response's
// g4_guard.tool_results (an empty array when none).
json screen_tools(ServerState& st, json& messages);

// Output checks of one request's answers. Each choice's events are held back until a check
// of its answer so far passes (ShieldGemma's prompt+response form), then handed on; a check
// is due at sentence ends and every N tokens (the profile's OutputCheckOptions) and at the
// end. A violation cancels that choice's sequence: its answer ends at the last checked-safe
// point with finish reason content_filter. Checks run on the HTTP worker thread that serves
// the request, on the guard's own engine; the scheduler's engine thread never waits for
// them (it keeps generating; what it generated past a violation is discarded).
class OutputGuard {
 public:
  using Forward = std::function<bool(size_t, const SeqEvent&)>;
  OutputGuard(ServerState& st, const RequestGuard& g, std::string prompt,
              std::vector<std::shared_ptr<SeqHandle>> hs);
  bool active() const { return active_; }
  // In place of the handler's on_event: keeps the event until a check passes.
  bool on_event(size_t c, const SeqEvent& e);
  // After a batch of choice c's events (finished: its last): checks when due and hands what
  // passed to `forward`; false when forward did (client gone).
  bool settle(size_t c, bool finished, const Forward& forward);
  bool stopped(size_t c) const { return st_[c].stopped; }
  // The choice's g4_guard extension: checks run, and the policy that stopped it.
  json info(size_t c) const;

 private:
  struct Choice {
    OutputGate gate;
    std::vector<SeqEvent> held;
    bool stopped = false;
    std::string policy;
    float score = 0, threshold = 0;
    explicit Choice(const OutputCheckOptions& o) : gate(o) {}
  };
  ServerState& s_;
  RiskProfile profile_;
  std::string prompt_;
  std::vector<std::shared_ptr<SeqHandle>> hs_;
  std::vector<Choice> st_;
  bool active_ = false;
};

}  // namespace g4::server
