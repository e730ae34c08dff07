// Route table, authentication, limits and error shapes of `g4 serve`.
#include <httplib.h>

#include "server/api_util.h"
#include "server/chat_page.h"

namespace g4::server {

void handle_chat_completions(ServerState&, const httplib::Request&, httplib::Response&);
void handle_completions(ServerState&, const httplib::Request&, httplib::Response&);
void handle_models(ServerState&, const httplib::Request&, httplib::Response&);
void handle_ollama_chat(ServerState&, const httplib::Request&, httplib::Response&);
void handle_ollama_generate(ServerState&, const httplib::Request&, httplib::Response&);
void handle_ollama_tags(ServerState&, const httplib::Request&, httplib::Response&);
void handle_ollama_show(ServerState&, const httplib::Request&, httplib::Response&);
void handle_ollama_version(ServerState&, const httplib::Request&, httplib::Response&);

Result<std::vector<int32_t>> chat_prompt(const Engine& e, const std::vector<ChatMessage>& msgs) {
  // The template follows the architecture; base checkpoints get the same turn markers as
  // the instruction-tuned ones.
  return encode_chat(chat_format_for_arch(e.model().config().arch), e.tokenizer(), msgs, true);
}

namespace {

bool is_ollama(const std::string& path) {
  return path.rfind("/api/", 0) == 0;
}

void send_error(httplib::Response& res, const std::string& path, const ApiError& e) {
  send_json(res, e.status, error_json(e, is_ollama(path)));
}

using Handler = void (*)(ServerState&, const httplib::Request&, httplib::Response&);

// Wraps an endpoint: readiness, JSON content, errors -> shaped bodies, metrics.
httplib::Server::Handler wrap(ServerState& st, const std::string& name, Handler h,
                              bool needs_model) {
  return [&st, name, h, needs_model](const httplib::Request& req, httplib::Response& res) {
    try {
      if (needs_model && !st.ready.load()) {
        res.set_header("Retry-After", "2");
        throw ApiError{503, "the model is still loading", "", "model_loading", "server_error"};
      }
      if (st.draining.load() && needs_model) {
        throw ApiError{503, "server is shutting down", "", "shutting_down", "server_error"};
      }
      h(st, req, res);
    } catch (const ApiError& e) {
      if (e.status == 429 || e.status == 503) res.set_header("Retry-After", "1");
      send_error(res, req.path, e);
    } catch (const std::exception& e) {
      send_error(res, req.path,
                 ApiError{500, std::string("internal error: ") + e.what(), "", "internal_error",
                          "server_error"});
    }
    st.metrics.count_request(name, res.status);
  };
}

}  // namespace

void register_routes(httplib::Server& svr, ServerState& st) {
  svr.set_payload_max_length(st.opts.max_body_bytes);
  // API key: every endpoint but /health. Browsers may pass it as ?api_key= for the page.
  svr.set_pre_routing_handler([&st](const httplib::Request& req, httplib::Response& res) {
    if (st.opts.api_key.empty() || req.path == "/health")
      return httplib::Server::HandlerResponse::Unhandled;
    std::string got = req.get_header_value("Authorization");
    if (got.rfind("Bearer ", 0) == 0) got = got.substr(7);
    if (got.empty()) got = req.get_header_value("X-Api-Key");
    if (got.empty() && req.path == "/" && req.has_param("api_key"))
      got = req.get_param_value("api_key");
    if (got == st.opts.api_key) return httplib::Server::HandlerResponse::Unhandled;
    send_error(
        res, req.path,
        ApiError{401,
                 got.empty() ? "missing API key (Authorization: Bearer KEY)" : "invalid API key",
                 "", "invalid_api_key", "authentication_error"});
    st.metrics.count_request("auth", 401);
    return httplib::Server::HandlerResponse::Handled;
  });
  // Statuses httplib produces itself (404 unknown route, 413 body too large, 400 bad HTTP).
  svr.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string msg = res.status == 404   ? "no such endpoint: " + req.method + " " + req.path
                      : res.status == 413 ? "request body too large"
                      : res.status == 405 ? "method not allowed"
                                          : "bad request";
    send_error(res, req.path,
               ApiError{res.status, msg, "",
                        res.status == 404   ? "not_found"
                        : res.status == 413 ? "payload_too_large"
                                            : "bad_request"});
  });

  svr.Get("/health", [&st](const httplib::Request&, httplib::Response& res) {
    if (st.ready.load() && !st.draining.load()) {
      send_json(res, 200, {{"status", "ok"}});
    } else {
      res.set_header("Retry-After", "1");
      send_json(res, 503, {{"status", st.draining.load() ? "shutting_down" : "loading"}});
    }
  });
  svr.Get("/metrics", [&st](const httplib::Request&, httplib::Response& res) {
    const SchedulerStats s = st.sched ? st.sched->stats() : SchedulerStats{};
    res.set_content(st.metrics.render(s), "text/plain; version=0.0.4");
  });
  svr.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(kChatPageHtml, "text/html; charset=utf-8");
  });
  svr.Post("/v1/chat/completions", wrap(st, "/v1/chat/completions", handle_chat_completions, true));
  svr.Post("/v1/completions", wrap(st, "/v1/completions", handle_completions, true));
  svr.Get("/v1/models", wrap(st, "/v1/models", handle_models, true));
  svr.Post("/api/chat", wrap(st, "/api/chat", handle_ollama_chat, true));
  svr.Post("/api/generate", wrap(st, "/api/generate", handle_ollama_generate, true));
  svr.Get("/api/tags", wrap(st, "/api/tags", handle_ollama_tags, true));
  svr.Post("/api/show", wrap(st, "/api/show", handle_ollama_show, true));
  svr.Get("/api/version", wrap(st, "/api/version", handle_ollama_version, false));
}

}  // namespace g4::server
