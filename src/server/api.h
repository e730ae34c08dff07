// HTTP front end of `g4 serve`: OpenAI- and Ollama-compatible endpoints over the scheduler.
// Request parsing is strict: wrong types, out-of-range values and parameters that would
// change results but are not implemented are refused with a 4xx and an error body, never
// ignored silently (ref: docs/ARCHITECTURE.md, "Server").
#pragma once
#include <atomic>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "g4/engine.h"
#include "guard/guard.h"
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
};

// Serialises with invalid UTF-8 replaced (model output may split a character at the end).
std::string dump(const json& j);

// Routes (all of them: OpenAI, Ollama, health, metrics, page).
void register_routes(httplib::Server& svr, ServerState& st);

// Model-specific prompt building shared by the API flavours.
Result<std::vector<int32_t>> chat_prompt(const Engine& e, const std::vector<ChatMessage>& msgs);

// Chat input check (guard_api.cc): throws ApiError 400 `content_filter` naming the policy when
// the last user message is flagged; nothing when no guard or no profile is active.
void guard_chat_input(ServerState& st, const json& messages);

}  // namespace g4::server
