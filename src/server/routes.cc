// Route table, authentication, limits and error shapes of `g4 serve`.
#include <httplib.h>

#include <algorithm>
#include <map>
#include <memory>

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
void handle_moderations(ServerState&, const httplib::Request&, httplib::Response&);

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

// Whether `method` is in an Allow value ("GET, HEAD").
bool allows(const std::string& allow, const std::string& method) {
  size_t at = 0;
  while (at < allow.size()) {
    const size_t end = std::min(allow.find(',', at), allow.size());
    if (allow.compare(at, end - at, method) == 0) return true;
    at = end + 1;
    while (at < allow.size() && allow[at] == ' ') ++at;
  }
  return false;
}

using Handler = void (*)(ServerState&, const httplib::Request&, httplib::Response&);

// Wraps an endpoint: readiness, JSON content, errors -> shaped bodies.
httplib::Server::Handler wrap(ServerState& st, Handler h, bool needs_model) {
  return [&st, h, needs_model](const httplib::Request& req, httplib::Response& res) {
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
    // Counted by the logger once the response went out (streams have no status yet here).
  };
}

}  // namespace

void register_routes(httplib::Server& svr, ServerState& st) {
  // Path -> its Allow header value, filled by get/post below before the server starts (read
  // only afterwards, from any thread).
  auto routes = std::make_shared<std::map<std::string, std::string>>();
  auto get = [&svr, routes](const char* path, httplib::Server::Handler h) {
    (*routes)[path] = "GET, HEAD";  // httplib answers HEAD with the GET handler
    svr.Get(path, std::move(h));
  };
  auto post = [&svr, routes](const char* path, httplib::Server::Handler h) {
    (*routes)[path] = "POST";
    svr.Post(path, std::move(h));
  };
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
    return httplib::Server::HandlerResponse::Handled;
  });
  // Statuses httplib produces itself (404 unknown route, 413 body too large, 400 bad HTTP),
  // and 405 for a known route asked with another method (httplib answers those 404). httplib
  // calls this before it writes the status line, so the status may still change here.
  svr.set_error_handler([routes](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    const auto route = routes->find(req.path);
    if (res.status == 404 && route != routes->end() && !allows(route->second, req.method)) {
      res.status = 405;
      res.set_header("Allow", route->second);
    }
    std::string msg = res.status == 404   ? "no such endpoint: " + req.method + " " + req.path
                      : res.status == 413 ? "request body too large"
                      : res.status == 405 ? "method " + req.method + " not allowed on " + req.path +
                                                " (allowed: " + res.get_header_value("Allow") + ")"
                                          : "bad request";
    send_error(res, req.path,
               ApiError{res.status, msg, "",
                        res.status == 404   ? "not_found"
                        : res.status == 413 ? "payload_too_large"
                        : res.status == 405 ? "method_not_allowed"
                                            : "bad_request"});
  });
  // Every answer is counted here, once it went out with its final status: streams (whose
  // status is set by httplib after the handler returned), auth refusals and what httplib
  // answers itself. Unknown paths share one label, so clients cannot grow the label set.
  svr.set_logger([&st, routes](const httplib::Request& req, const httplib::Response& res) {
    st.metrics.count_request(routes->count(req.path) ? req.path : "other", res.status);
  });

  get("/health", [&st](const httplib::Request&, httplib::Response& res) {
    if (st.ready.load() && !st.draining.load()) {
      send_json(res, 200, {{"status", "ok"}});
    } else {
      res.set_header("Retry-After", "1");
      send_json(res, 503, {{"status", st.draining.load() ? "shutting_down" : "loading"}});
    }
  });
  get("/metrics", [&st](const httplib::Request&, httplib::Response& res) {
    // st.sched is assigned by the main thread before it sets ready (release/acquire).
    const SchedulerStats s = st.ready.load() ? st.sched->stats() : SchedulerStats{};
    res.set_content(st.metrics.render(s), "text/plain; version=0.0.4");
  });
  get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(kChatPageHtml, "text/html; charset=utf-8");
  });
  post("/v1/chat/completions", wrap(st, handle_chat_completions, true));
  post("/v1/completions", wrap(st, handle_completions, true));
  get("/v1/models", wrap(st, handle_models, true));
  post("/v1/moderations", wrap(st, handle_moderations, true));
  post("/api/chat", wrap(st, handle_ollama_chat, true));
  post("/api/generate", wrap(st, handle_ollama_generate, true));
  get("/api/tags", wrap(st, handle_ollama_tags, true));
  post("/api/show", wrap(st, handle_ollama_show, true));
  get("/api/version", wrap(st, handle_ollama_version, false));
}

}  // namespace g4::server
