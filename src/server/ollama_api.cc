// Ollama-compatible endpoints: /api/chat, /api/generate (NDJSON streaming), /api/tags,
// /api/show, /api/version. Errors use Ollama's {"error": "..."} shape.
#include <random>

#include "io/gguf.h"
#include "server/api_util.h"

namespace g4::server {

namespace {

SeqRequest parse_options(ServerState& st, const json& j, std::vector<int32_t> prompt,
                         const AgentPlan* plan = nullptr) {
  SeqRequest r;
  r.prompt = std::move(prompt);
  SamplingParams& sp = r.gen.sampling;  // Ollama's defaults
  sp.temperature = 0.8f;
  sp.top_k = 40;
  sp.top_p = 0.9f;
  sp.min_p = 0.0f;
  sp.repetition_penalty = 1.1f;
  sp.seed = std::random_device{}();
  int64_t num_predict = -1;
  const json* o = nullptr;
  if (j.contains("options") && !j["options"].is_null()) {
    if (!j["options"].is_object()) throw ApiError{400, "'options' must be an object", "options"};
    o = &j["options"];
  }
  if (o) {
    double d;
    int64_t i;
    if (get_number(*o, "temperature", 0, 100, &d)) sp.temperature = float(d);
    if (get_int(*o, "top_k", 0, 1 << 20, &i)) sp.top_k = int(i);
    if (get_number(*o, "top_p", 0, 1, &d)) sp.top_p = d > 0 ? float(d) : 1.0f;
    if (get_number(*o, "min_p", 0, 1, &d)) sp.min_p = float(d);
    if (get_number(*o, "repeat_penalty", 0.01, 10, &d)) sp.repetition_penalty = float(d);
    if (get_int(*o, "repeat_last_n", -1, 1 << 20, &i)) sp.penalty_last_n = int(i);
    if (get_number(*o, "presence_penalty", -2, 2, &d)) sp.presence_penalty = float(d);
    if (get_number(*o, "frequency_penalty", -2, 2, &d)) sp.frequency_penalty = float(d);
    if (get_int(*o, "seed", INT64_MIN, INT64_MAX, &i)) sp.seed = uint64_t(i);
    get_int(*o, "num_predict", -2, INT32_MAX, &num_predict);
    if (get_int(*o, "num_ctx", 1, INT32_MAX, &i) && i > st.sched->n_ctx()) {
      throw ApiError{400,
                     "num_ctx " + std::to_string(i) + " exceeds the server's context of " +
                         std::to_string(st.sched->n_ctx()) + " (start it with a larger --ctx)",
                     "options.num_ctx"};
    }
    get_stop(*o, "stop", &r.gen.stop);
    for (const char* k : {"mirostat", "tfs_z", "typical_p"}) {
      double v;
      if (get_number(*o, k, -1e9, 1e9, &v) && v != 0 && !(std::string(k) != "mirostat" && v == 1))
        throw ApiError{400, std::string("option '") + k + "' is not supported",
                       std::string("options.") + k};
    }
  }
  const int64_t room = st.sched->n_ctx() - int64_t(r.prompt.size());
  if (room <= 0)
    throw ApiError{400,
                   "the prompt has " + std::to_string(r.prompt.size()) +
                       " tokens, which does not fit the context of " +
                       std::to_string(st.sched->n_ctx()),
                   "prompt"};
  r.gen.max_tokens =
      int(num_predict < 0 ? room : std::min<int64_t>(std::max<int64_t>(num_predict, 1), room));
  // format: "json" (any JSON object) or a JSON Schema object, as Ollama takes it; for chat it
  // is part of the plan (with the tools).
  if (plan) {
    apply_plan(*plan, st.engine->tokenizer(), r.gen);
  } else {
    if (auto f = ollama_format_spec(j))
      r.gen.constraint = compile_constraint(st, f->second, "format");
    if (j.contains("tools") && !j["tools"].is_null() &&
        !(j["tools"].is_array() && j["tools"].empty()))
      throw ApiError{400, "'tools' need /api/chat", "tools"};
  }
  if (j.contains("images") && !j["images"].is_null() &&
      !(j["images"].is_array() && j["images"].empty()))
    throw ApiError{400, "this model reads text only ('images')", "images"};
  return r;
}

// The guard's part of a request: its checks, the question output checks judge the answer
// against, and the injection findings in its tool results.
struct GuardPart {
  RequestGuard guard;
  std::string prompt;
  json tool_results = json::array();
};

void respond(ServerState& st, httplib::Response& res, SeqRequest r, bool stream, bool chat,
             std::shared_ptr<AgentPlan> plan = nullptr, GuardPart gp = {}) {
  auto hs = submit_all(st, {r});
  auto og = std::make_shared<OutputGuard>(st, gp.guard, gp.prompt, hs);
  const double t0 = unix_now();
  json ext = nullptr;  // g4_guard: filled at the end
  if (!gp.tool_results.empty()) ext = {{"tool_results", gp.tool_results}};
  auto final_fields = [t0, og, ext](json& j, const SeqSummary& s) {
    const double total = unix_now() - t0;
    j["done"] = true;
    // Cut short by shutdown: "length" (truncated), and an "error" field (Ollama's client
    // raises on it) that says why.
    j["done_reason"] = s.finish_reason == "length" || cut_by_shutdown(s) ? "length" : "stop";
    if (og->active() && og->stopped(0)) j["done_reason"] = "content_filter";
    json e = ext;
    if (og->active()) {
      if (e.is_null()) e = json::object();
      e["output"] = json::array({og->info(0)});
    }
    if (!e.is_null()) j["g4_guard"] = std::move(e);
    if (cut_by_shutdown(s)) j["error"] = shutdown_error(s).message;
    j["total_duration"] = (long long)(total * 1e9);
    j["load_duration"] = 0;
    j["prompt_eval_count"] = s.n_prompt;
    j["prompt_eval_duration"] = (long long)(s.ttft_seconds * 1e9);
    j["eval_count"] = s.n_generated;
    j["eval_duration"] = (long long)(std::max(0.0, s.total_seconds - s.ttft_seconds) * 1e9);
  };
  auto make = [&st, chat](const std::string& text) {
    json j = {{"model", st.model_id}, {"created_at", iso_time_now()}};
    if (chat)
      j["message"] = {{"role", "assistant"}, {"content", text}};
    else
      j["response"] = text;
    j["done"] = false;
    return j;
  };
  // A parsed stretch of a chat answer: thinking and tool_calls beside the content.
  auto make_parsed = [make](const OutputDelta& d) {
    json j = make(d.content);
    if (!d.reasoning.empty()) j["message"]["thinking"] = d.reasoning;
    if (!d.calls.empty()) j["message"]["tool_calls"] = ollama_tool_calls(d.calls);
    return j;
  };
  const bool parse = chat && plan && plan->parse;
  if (!stream) {
    auto text = std::make_shared<std::string>();
    respond_collected(
        st, res, std::move(hs), [text](size_t, const SeqEvent& e) { *text += e.text; },
        [text, make, make_parsed, final_fields, plan, parse](const std::vector<SeqSummary>& sums) {
          if (sums[0].finish_reason == "error")
            throw ApiError{500, "generation failed: " + sums[0].error, ""};
          if (cut_by_shutdown(sums[0])) throw shutdown_error(sums[0]);
          json j;
          if (parse) {
            auto p = make_output_parser(plan->fmt, plan->agent, random_id("call_") + "_");
            OutputDelta d = p->push(*text);
            append_delta(d, p->finish());
            j = make_parsed(d);
          } else {
            j = make(*text);
          }
          final_fields(j, sums[0]);
          return j;
        },
        true, og);
    return;
  }
  res.set_chunked_content_provider(
      "application/x-ndjson",
      [&st, hs, og, make, make_parsed, final_fields, plan, parse](size_t, httplib::DataSink& sink) {
        auto send = [&](const json& j) {
          const std::string s = dump(j) + "\n";
          return sink.write(s.data(), s.size());
        };
        std::unique_ptr<OutputParser> parser;
        if (parse) parser = make_output_parser(plan->fmt, plan->agent, random_id("call_") + "_");
        std::vector<SeqSummary> sums;
        const std::function<bool(size_t, const SeqEvent&)> on_event = [&](size_t,
                                                                          const SeqEvent& e) {
          if (e.text.empty()) return true;
          if (!parser) return send(make(e.text));
          const OutputDelta d = parser->push(e.text);
          return d.empty() ? true : send(make_parsed(d));
        };
        bool ok;
        if (og->active())  // output checks: text goes out once checked (OutputGuard)
          ok = drain(
              hs, [&](size_t c, const SeqEvent& e) { return og->on_event(c, e); }, &sums, {},
              [&](size_t c, bool fin) { return og->settle(c, fin, on_event); });
        else
          ok = drain(hs, on_event, &sums);
        if (ok && parser && sums[0].finish_reason != "error") {
          const OutputDelta d = parser->finish();
          if (!d.empty()) ok = send(make_parsed(d));
        }
        if (!ok) {
          st.metrics.disconnected();
          return false;
        }
        if (sums[0].finish_reason == "error") {
          send({{"error", "generation failed: " + sums[0].error}});
        } else {
          json j = make("");
          final_fields(j, sums[0]);
          send(j);
        }
        sink.done();
        return true;
      },
      cancel_unless_sent(hs));
}

json details(const ServerState& st) {
  const auto& c = st.engine->model().config();
  std::string ftype = "unknown";
  const std::string name = st.model_id;
  for (const char* q : {"q4_k_m", "q4_k_s", "q8_0", "q4_0", "q6_k", "q5_0", "f16", "bf16", "f32"}) {
    std::string low = name;
    for (auto& ch : low) ch = char(std::tolower(ch));
    if (low.find(q) != std::string::npos) {
      ftype = q;
      for (auto& ch : ftype) ch = char(std::toupper(ch));
      break;
    }
  }
  return {{"parent_model", ""},   {"format", "gguf"},     {"family", c.arch},
          {"families", {c.arch}}, {"parameter_size", ""}, {"quantization_level", ftype}};
}

json capabilities(const ServerState& st) {
  if (!st.engine->instruction_tuned()) return json{"completion"};
  json c = {"completion", "chat", "tools"};
  if (st.engine->model().config().arch == "gemma4") c.push_back("thinking");
  return c;
}

bool stream_flag(const json& j) {
  bool stream = true;  // Ollama streams unless told not to
  get_bool(j, "stream", &stream);
  return stream;
}

}  // namespace

void handle_ollama_chat(ServerState& st, const httplib::Request& req, httplib::Response& res) {
  const json j = parse_body(req);
  check_model(st, j, true);
  ChatRequest cr = parse_chat_request(j, true);
  GuardPart gp;
  gp.guard = request_guard(st, j);
  gp.prompt = last_user_text(cr.messages);
  guard_input(st, gp.guard, gp.prompt, "messages");
  gp.tool_results = screen_tools(st, cr.messages);
  std::vector<int32_t> ids;
  auto plan = plan_agent(st, cr, ollama_format_spec(j), &ids);
  SeqRequest r = parse_options(st, j, std::move(ids), plan.get());
  respond(st, res, std::move(r), stream_flag(j), true, std::move(plan), std::move(gp));
}

void handle_ollama_generate(ServerState& st, const httplib::Request& req, httplib::Response& res) {
  const json j = parse_body(req);
  check_model(st, j, true);
  std::string prompt, system;
  get_string(j, "prompt", &prompt);
  get_string(j, "system", &system);
  bool raw = false;
  get_bool(j, "raw", &raw);
  if (j.contains("context") && !j["context"].is_null())
    throw ApiError{400,
                   "'context' is not supported; send the whole conversation (the server reuses "
                   "cached prefixes)",
                   "context"};
  if (prompt.empty()) {  // Ollama: an empty prompt just loads the model
    send_json(res, 200,
              {{"model", st.model_id},
               {"created_at", iso_time_now()},
               {"response", ""},
               {"done", true},
               {"done_reason", "load"}});
    return;
  }
  GuardPart gp;
  gp.guard = request_guard(st, j);
  gp.prompt = prompt;
  guard_input(st, gp.guard, prompt, "prompt");
  std::vector<int32_t> ids;
  if (raw || !st.engine->instruction_tuned()) {
    const std::string text = system.empty() ? prompt : system + "\n\n" + prompt;
    ids = st.engine->tokenizer().encode(text, true, false);
  } else {
    std::vector<ChatMessage> msgs;
    if (!system.empty()) msgs.push_back({"system", system});
    msgs.push_back({"user", prompt});
    auto r = chat_prompt(*st.engine, msgs);
    if (!r.ok()) throw ApiError{400, r.error(), "prompt"};
    ids = std::move(r).value();
  }
  respond(st, res, parse_options(st, j, std::move(ids)), stream_flag(j), false, nullptr,
          std::move(gp));
}

void handle_ollama_tags(ServerState& st, const httplib::Request&, httplib::Response& res) {
  json m = {{"name", st.model_id},
            {"model", st.model_id},
            {"modified_at", iso_time_now()},
            {"size", (long long)st.engine->file().file_size()},
            {"digest", ""},
            {"details", details(st)}};
  send_json(res, 200, {{"models", json::array({m})}});
}

void handle_ollama_show(ServerState& st, const httplib::Request& req, httplib::Response& res) {
  const json j = parse_body(req);
  std::string name;
  if (!get_string(j, "model", &name) && !get_string(j, "name", &name))
    throw ApiError{400, "'model' is required", "model"};
  json probe = {{"model", name}};
  check_model(st, probe, true);
  const auto& c = st.engine->model().config();
  json info = {{"general.architecture", c.arch},
               {"general.name", c.name},
               {c.arch + ".context_length", c.n_ctx_train},
               {c.arch + ".embedding_length", c.model_dim},
               {c.arch + ".block_count", c.n_layers}};
  send_json(res, 200,
            {{"modelfile", "FROM " + st.opts.model_path},
             {"parameters", ""},
             {"template", ""},
             {"details", details(st)},
             {"model_info", info},
             {"capabilities", capabilities(st)},
             {"modified_at", iso_time_now()}});
}

void handle_ollama_version(ServerState&, const httplib::Request&, httplib::Response& res) {
  send_json(res, 200, {{"version", "0.12.0"}, {"g4_version", "0.1.0"}});
}

}  // namespace g4::server
