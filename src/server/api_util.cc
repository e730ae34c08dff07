#include "server/api_util.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <random>

namespace g4::server {

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

json parse_body(const httplib::Request& req) {
  json j;
  try {
    j = json::parse(req.body);
  } catch (const json::exception& e) {
    throw ApiError{400, std::string("request body is not valid JSON: ") + e.what(), "",
                   "invalid_json"};
  }
  if (!j.is_object()) throw ApiError{400, "request body must be a JSON object", "", "invalid_json"};
  return j;
}

static const json* field(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

bool get_number(const json& j, const char* key, double lo, double hi, double* out) {
  const json* f = field(j, key);
  if (!f) return false;
  if (!f->is_number())
    throw ApiError{400, std::string("'") + key + "' must be a number", key, "invalid_type"};
  const double v = f->get<double>();
  if (!std::isfinite(v) || v < lo || v > hi) {
    throw ApiError{400,
                   std::string("'") + key + "' must be between " + std::to_string(lo) + " and " +
                       std::to_string(hi),
                   key, "invalid_value"};
  }
  *out = v;
  return true;
}

bool get_int(const json& j, const char* key, int64_t lo, int64_t hi, int64_t* out) {
  const json* f = field(j, key);
  if (!f) return false;
  const ApiError range{400,
                       std::string("'") + key + "' must be between " + std::to_string(lo) +
                           " and " + std::to_string(hi),
                       key, "invalid_value"};
  int64_t v = 0;
  if (f->is_number_unsigned()) {  // nlohmann keeps non-negative literals as uint64
    const uint64_t u = f->get<uint64_t>();
    if (u > uint64_t(INT64_MAX)) throw range;
    v = int64_t(u);
  } else if (f->is_number_integer()) {
    v = f->get<int64_t>();
  } else if (f->is_number_float() && std::floor(f->get<double>()) == f->get<double>()) {
    const double d = f->get<double>();  // 2.0 is accepted as 2; never cast out of range
    if (!(d >= -9.2e18 && d <= 9.2e18)) throw range;
    v = int64_t(d);
  } else {
    throw ApiError{400, std::string("'") + key + "' must be an integer", key, "invalid_type"};
  }
  if (v < lo || v > hi) throw range;
  *out = v;
  return true;
}

bool get_bool(const json& j, const char* key, bool* out) {
  const json* f = field(j, key);
  if (!f) return false;
  if (!f->is_boolean())
    throw ApiError{400, std::string("'") + key + "' must be a boolean", key, "invalid_type"};
  *out = f->get<bool>();
  return true;
}

bool get_string(const json& j, const char* key, std::string* out) {
  const json* f = field(j, key);
  if (!f) return false;
  if (!f->is_string())
    throw ApiError{400, std::string("'") + key + "' must be a string", key, "invalid_type"};
  *out = f->get<std::string>();
  return true;
}

bool get_stop(const json& j, const char* key, std::vector<std::string>* out) {
  const json* f = field(j, key);
  if (!f) return false;
  if (f->is_string()) {
    out->push_back(f->get<std::string>());
  } else if (f->is_array()) {
    if (f->size() > 16)
      throw ApiError{400, std::string("'") + key + "' has more than 16 entries", key,
                     "invalid_value"};
    for (const auto& s : *f) {
      if (!s.is_string())
        throw ApiError{400, std::string("'") + key + "' must be a string or an array of strings",
                       key, "invalid_type"};
      out->push_back(s.get<std::string>());
    }
  } else {
    throw ApiError{400, std::string("'") + key + "' must be a string or an array of strings", key,
                   "invalid_type"};
  }
  for (const auto& s : *out) {
    if (s.empty())
      throw ApiError{400, std::string("'") + key + "' entries must not be empty", key,
                     "invalid_value"};
  }
  return true;
}

std::vector<ChatMessage> get_messages(const json& j, const char* key) {
  const json* f = field(j, key);
  if (!f) throw ApiError{400, std::string("'") + key + "' is required", key, "missing_field"};
  if (!f->is_array())
    throw ApiError{400, std::string("'") + key + "' must be an array", key, "invalid_type"};
  if (f->empty())
    throw ApiError{400, std::string("'") + key + "' must not be empty", key, "invalid_value"};
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < f->size(); ++i) {
    const json& m = (*f)[i];
    const std::string p = std::string(key) + "[" + std::to_string(i) + "]";
    if (!m.is_object()) throw ApiError{400, p + " must be an object", p, "invalid_type"};
    ChatMessage cm;
    if (!get_string(m, "role", &cm.role))
      throw ApiError{400, p + ".role is required", p + ".role", "missing_field"};
    if (cm.role == "developer") cm.role = "system";
    if (cm.role != "system" && cm.role != "user" && cm.role != "assistant") {
      throw ApiError{
          400, p + ".role '" + cm.role + "' is not supported (system, developer, user, assistant)",
          p + ".role", "invalid_value"};
    }
    const json* c = field(m, "content");
    if (!c) {
      throw ApiError{400, p + ".content is required", p + ".content", "missing_field"};
    } else if (c->is_string()) {
      cm.content = c->get<std::string>();
    } else if (c->is_array()) {
      for (const auto& part : *c) {
        std::string type, text;
        if (!part.is_object() || !get_string(part, "type", &type) || type != "text" ||
            !get_string(part, "text", &text)) {
          throw ApiError{400,
                         p + ".content parts must be {\"type\": \"text\", \"text\": ...} (this "
                             "model reads text only)",
                         p + ".content", "invalid_value"};
        }
        cm.content += text;
      }
    } else {
      throw ApiError{400, p + ".content must be a string or an array of text parts", p + ".content",
                     "invalid_type"};
    }
    if (m.contains("tool_calls") && !m["tool_calls"].is_null()) {
      throw ApiError{400, "tool calls are not supported yet", p + ".tool_calls",
                     "unsupported_parameter"};
    }
    out.push_back(std::move(cm));
  }
  return out;
}

void check_model(const ServerState& st, const json& j, bool required) {
  std::string m;
  if (!get_string(j, "model", &m)) {
    if (required) throw ApiError{400, "'model' is required", "model", "missing_field"};
    return;
  }
  std::string base = m;
  if (base.size() > 7 && base.compare(base.size() - 7, 7, ":latest") == 0)
    base.resize(base.size() - 7);
  if (base != st.model_id && base != "default" && base != "g4") {
    throw ApiError{404, "model '" + m + "' not found (this server serves '" + st.model_id + "')",
                   "model", "model_not_found"};
  }
}

std::shared_ptr<const CompiledConstraint> compile_constraint(ServerState& st,
                                                             const ConstraintSpec& spec,
                                                             const std::string& param) {
  auto c = st.engine->constraints().compile(spec);
  if (!c.ok()) throw ApiError{400, "'" + param + "': " + c.error(), param, "invalid_value"};
  return c.value();
}

std::optional<AskedConstraint> openai_constraint_spec(const json& j) {
  std::vector<AskedConstraint> asked;
  if (field(j, "response_format")) {
    const json& rf = j["response_format"];
    if (!rf.is_object() || !rf.contains("type") || !rf["type"].is_string())
      throw ApiError{400, "'response_format' must be an object with a 'type'", "response_format",
                     "invalid_type"};
    const std::string type = rf["type"];
    if (type == "json_object") {
      asked.push_back({"response_format", {ConstraintSpec::Kind::kJsonObject, "", {}}});
    } else if (type == "json_schema") {
      if (!rf.contains("json_schema") || !rf["json_schema"].is_object())
        throw ApiError{400, "'response_format.json_schema' must be an object",
                       "response_format.json_schema", "invalid_type"};
      const json& js = rf["json_schema"];
      if (!js.contains("schema") || !(js["schema"].is_object() || js["schema"].is_boolean()))
        throw ApiError{400, "'response_format.json_schema.schema' must be a JSON Schema object",
                       "response_format.json_schema.schema", "invalid_type"};
      asked.push_back({"response_format.json_schema.schema",
                       {ConstraintSpec::Kind::kJsonSchema, js["schema"].dump(), {}}});
    } else if (type != "text") {
      throw ApiError{
          400,
          "'response_format.type' must be text, json_object or json_schema, not '" + type + "'",
          "response_format.type", "invalid_value"};
    }
  }
  std::string text;
  if (get_string(j, "regex", &text))
    asked.push_back({"regex", {ConstraintSpec::Kind::kRegex, text, {}}});
  if (get_string(j, "grammar", &text))
    asked.push_back({"grammar", {ConstraintSpec::Kind::kGrammar, text, {}}});
  if (field(j, "choice")) {
    const json& c = j["choice"];
    if (!c.is_array() ||
        !std::all_of(c.begin(), c.end(), [](const json& x) { return x.is_string(); }))
      throw ApiError{400, "'choice' must be an array of strings", "choice", "invalid_type"};
    asked.push_back(
        {"choice", {ConstraintSpec::Kind::kChoice, "", c.get<std::vector<std::string>>()}});
  }
  if (asked.empty()) return std::nullopt;
  if (asked.size() > 1)
    throw ApiError{
        400,
        "give one constraint: '" + asked[0].first + "' and '" + asked[1].first + "' were both set",
        asked[1].first, "invalid_value"};
  return asked[0];
}

std::shared_ptr<const CompiledConstraint> openai_constraint(ServerState& st, const json& j) {
  auto a = openai_constraint_spec(j);
  return a ? compile_constraint(st, a->second, a->first) : nullptr;
}

std::optional<AskedConstraint> ollama_format_spec(const json& j) {
  if (!j.contains("format") || j["format"].is_null() || j["format"] == "") return std::nullopt;
  const json& f = j["format"];
  if (f == "json") return AskedConstraint{"format", {ConstraintSpec::Kind::kJsonObject, "", {}}};
  if (f.is_object())
    return AskedConstraint{"format", {ConstraintSpec::Kind::kJsonSchema, f.dump(), {}}};
  throw ApiError{400, "'format' must be \"json\" or a JSON Schema object", "format"};
}

ChatRequest parse_chat_request(const json& j, bool ollama) {
  try {
    return ollama ? parse_ollama_chat(j) : parse_openai_chat(j);
  } catch (const RequestError& e) {
    throw ApiError{400, e.message, e.param, e.code};
  }
}

std::shared_ptr<AgentPlan> plan_agent(ServerState& st, const ChatRequest& cr,
                                      const std::optional<AskedConstraint>& response,
                                      std::vector<int32_t>* prompt) {
  auto plan = std::make_shared<AgentPlan>();
  plan->fmt = chat_format_for_arch(st.engine->model().config().arch);
  plan->agent = cr.agent;
  const Tokenizer& tok = st.engine->tokenizer();
  if (cr.agent.thinking && plan->fmt != ChatFormat::kGemma4)
    throw ApiError{400, "this model (Gemma 3) has no thinking mode", "think", "invalid_value"};
  auto ids = encode_agent_chat(plan->fmt, tok, cr);
  if (!ids.ok()) throw ApiError{400, ids.error(), "messages", "invalid_value"};
  *prompt = std::move(ids).value();
  std::optional<ConstraintSpec> rs;
  if (response) rs = response->second;
  auto spec = agent_constraint(plan->fmt, cr.agent, rs);
  const std::string param = cr.agent.calls_possible() ? "tools" : response ? response->first : "";
  if (!spec.ok()) throw ApiError{400, "'" + param + "': " + spec.error(), param, "invalid_value"};
  if (spec.value()) plan->constraint = compile_constraint(st, *spec.value(), param);
  plan->parse = plan->fmt == ChatFormat::kGemma4 || cr.agent.calls_possible();
  return plan;
}

void apply_plan(const AgentPlan& p, const Tokenizer& tok, GenerateOptions& g) {
  g.constraint = p.constraint;
  if (p.fmt != ChatFormat::kGemma4) return;
  g.show_control = true;
  if (p.agent.thinking) {
    g.thought_open = tok.find("<|channel>");
    g.thought_close = tok.find("<channel|>");
    g.thinking_budget = p.agent.thinking_budget;
  }
}

std::vector<std::pair<int32_t, float>> parse_logit_bias(const json& j, int n_tokens) {
  std::vector<std::pair<int32_t, float>> out;
  if (!field(j, "logit_bias")) return out;
  const json& b = j["logit_bias"];
  if (!b.is_object())
    throw ApiError{400, "'logit_bias' must be an object of token id -> bias", "logit_bias",
                   "invalid_type"};
  if (b.size() > 1024)
    throw ApiError{400, "'logit_bias' has more than 1024 entries", "logit_bias", "invalid_value"};
  for (const auto& [k, v] : b.items()) {
    size_t used = 0;
    long id = -1;
    try {
      id = std::stol(k, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (k.empty() || used != k.size() || id < 0 || id >= n_tokens)
      throw ApiError{400,
                     "'logit_bias' key '" + k + "' is not a token id (0.." +
                         std::to_string(n_tokens - 1) + ")",
                     "logit_bias", "invalid_value"};
    if (!v.is_number() || v.get<double>() < -100 || v.get<double>() > 100)
      throw ApiError{400, "'logit_bias' values must be numbers in [-100, 100] (token " + k + ")",
                     "logit_bias", "invalid_value"};
    out.emplace_back(int32_t(id), float(v.get<double>()));
  }
  return out;
}

void refuse_if_set(const json& j, const char* key, const char* why) {
  if (field(j, key))
    throw ApiError{400, std::string("'") + key + "' is not supported: " + why, key,
                   "unsupported_parameter"};
}

std::vector<std::shared_ptr<SeqHandle>> submit_all(ServerState& st,
                                                   const std::vector<SeqRequest>& reqs) {
  std::vector<std::shared_ptr<SeqHandle>> hs;
  for (const SeqRequest& r : reqs) {
    auto s = st.sched->submit(r);
    if (s.refusal != Scheduler::Refusal::kNone) {
      for (auto& h : hs) h->cancel();
      if (s.refusal == Scheduler::Refusal::kQueueFull)
        throw ApiError{429, s.message, "", "server_busy", "rate_limit_error"};
      if (s.refusal == Scheduler::Refusal::kShuttingDown)
        throw ApiError{503, s.message, "", "shutting_down", "server_error"};
      throw ApiError{400, s.message, "", "invalid_value"};
    }
    hs.push_back(s.handle);
  }
  return hs;
}

bool drain(const std::vector<std::shared_ptr<SeqHandle>>& hs,
           const std::function<bool(size_t, const SeqEvent&)>& on_event,
           std::vector<SeqSummary>* summaries, const std::function<bool()>& on_idle,
           const std::function<bool(size_t, bool)>& on_batch) {
  summaries->assign(hs.size(), SeqSummary{});
  std::vector<bool> done(hs.size(), false);
  size_t left = hs.size();
  std::vector<SeqEvent> evs;
  auto last_event = std::chrono::steady_clock::now();
  while (left > 0) {
    if (on_idle && std::chrono::steady_clock::now() - last_event > std::chrono::seconds(1)) {
      last_event = std::chrono::steady_clock::now();
      if (!on_idle()) {
        for (auto& h : hs) h->cancel();
        return false;
      }
    }
    for (size_t i = 0; i < hs.size(); ++i) {
      if (done[i]) continue;
      evs.clear();
      const bool fin = hs[i]->wait(&evs, &(*summaries)[i], hs.size() == 1 ? 200 : 10);
      if (!evs.empty()) last_event = std::chrono::steady_clock::now();
      for (const auto& e : evs) {
        if (!on_event(i, e)) {
          for (auto& h : hs) h->cancel();
          return false;
        }
      }
      if (on_batch && (!evs.empty() || fin) && !on_batch(i, fin)) {
        for (auto& h : hs) h->cancel();
        return false;
      }
      if (fin) {
        done[i] = true;
        --left;
      }
    }
  }
  return true;
}

static void respond_collected_impl(ServerState& st, httplib::Response& res,
                                   std::vector<std::shared_ptr<SeqHandle>> hs,
                                   std::function<void(size_t, const SeqEvent&)> on_event,
                                   std::function<json(const std::vector<SeqSummary>&)> body,
                                   bool ollama, std::function<void(size_t, bool)> on_batch);

void respond_collected(ServerState& st, httplib::Response& res,
                       std::vector<std::shared_ptr<SeqHandle>> hs,
                       std::function<void(size_t, const SeqEvent&)> on_event,
                       std::function<json(const std::vector<SeqSummary>&)> body, bool ollama,
                       std::shared_ptr<OutputGuard> guard) {
  if (guard && guard->active()) {
    // Events reach on_event only once a check of the answer so far has passed.
    auto forward = [on_event](size_t c, const SeqEvent& e) {
      on_event(c, e);
      return true;
    };
    on_event = [guard](size_t c, const SeqEvent& e) { guard->on_event(c, e); };
    auto settle = [guard, forward](size_t c, bool fin) { guard->settle(c, fin, forward); };
    return respond_collected_impl(st, res, std::move(hs), on_event, std::move(body), ollama,
                                  settle);
  }
  return respond_collected_impl(st, res, std::move(hs), std::move(on_event), std::move(body),
                                ollama, nullptr);
}

static void respond_collected_impl(ServerState& st, httplib::Response& res,
                                   std::vector<std::shared_ptr<SeqHandle>> hs,
                                   std::function<void(size_t, const SeqEvent&)> on_event,
                                   std::function<json(const std::vector<SeqSummary>&)> body,
                                   bool ollama, std::function<void(size_t, bool)> on_batch) {
  const size_t n = hs.size();
  std::vector<SeqSummary> sums(n);
  std::vector<bool> done(n, false);
  std::vector<SeqEvent> evs;
  bool failed = false;
  for (size_t i = 0; i < n; ++i) {
    for (bool got = false; !got && !done[i];) {
      evs.clear();
      done[i] = hs[i]->wait(&evs, &sums[i], 200);
      for (const auto& e : evs) on_event(i, e);
      if (on_batch && (!evs.empty() || done[i])) on_batch(i, done[i]);
      got = !evs.empty();
    }
    failed = failed || (done[i] && sums[i].finish_reason == "error");
  }
  if (failed) {
    for (auto& h : hs) h->cancel();
    for (size_t i = 0; i < n; ++i) {
      while (!done[i]) {
        evs.clear();  // a cancelled sequence's last events are not reported
        done[i] = hs[i]->wait(&evs, &sums[i], 200);
      }
    }
  }
  if (std::all_of(done.begin(), done.end(), [](bool d) { return d; })) {
    send_json(res, 200, body(sums));  // throws for a failed sequence
    return;
  }
  res.status = 200;
  res.set_chunked_content_provider(
      "application/json",
      [&st, hs, done, sums, on_event, body, ollama, on_batch](size_t,
                                                              httplib::DataSink& sink) mutable {
        std::vector<std::shared_ptr<SeqHandle>> rest;
        std::vector<size_t> at;
        for (size_t i = 0; i < hs.size(); ++i) {
          if (done[i]) continue;
          rest.push_back(hs[i]);
          at.push_back(i);
        }
        auto last = std::chrono::steady_clock::now();
        auto ping = [&] {
          const auto now = std::chrono::steady_clock::now();
          if (now - last < std::chrono::seconds(1)) return true;
          last = now;
          return sink.write(" ", 1);
        };
        std::vector<SeqSummary> rs;
        std::function<bool(size_t, bool)> batch;
        if (on_batch)
          batch = [&](size_t c, bool fin) {
            on_batch(at[c], fin);
            return ping();
          };
        const bool ok = drain(
            rest,
            [&](size_t c, const SeqEvent& e) {
              on_event(at[c], e);
              return ping();
            },
            &rs, ping, batch);
        if (!ok) {
          st.metrics.disconnected();
          return false;
        }
        for (size_t k = 0; k < rest.size(); ++k) sums[at[k]] = rs[k];
        json j;
        try {
          j = body(sums);
        } catch (const ApiError& e) {
          j = error_json(e, ollama);
        }
        const std::string s = dump(j);
        sink.write(s.data(), s.size());
        sink.done();
        return true;
      },
      cancel_unless_sent(hs));
}

httplib::ContentProviderResourceReleaser cancel_unless_sent(
    std::vector<std::shared_ptr<SeqHandle>> hs) {
  return [hs = std::move(hs)](bool sent) {
    if (!sent)
      for (const auto& h : hs) h->cancel();
  };
}

json error_json(const ApiError& e, bool ollama) {
  if (ollama) return {{"error", e.message}};
  return {{"error",
           {{"message", e.message},
            {"type", e.type},
            {"param", e.param.empty() ? json(nullptr) : json(e.param)},
            {"code", e.code.empty() ? json(nullptr) : json(e.code)}}}};
}

bool cut_by_shutdown(const SeqSummary& s) {
  return s.finish_reason == "shutdown";
}

ApiError shutdown_error(const SeqSummary& s) {
  return ApiError{503,
                  "the server is shutting down: the answer was cut short after " +
                      std::to_string(s.n_generated) + " tokens",
                  "", "shutting_down", "server_error"};
}

void send_json(httplib::Response& res, int status, const json& j) {
  res.status = status;
  res.set_content(dump(j), "application/json");
}

std::string random_id(const char* prefix) {
  static std::mt19937_64 rng{std::random_device{}()};
  static std::mutex mu;
  std::lock_guard<std::mutex> l(mu);
  static const char* hex = "0123456789abcdef";
  std::string s = prefix;
  for (int i = 0; i < 24; ++i) s += hex[rng() % 16];
  return s;
}

std::string iso_time_now() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char b[40];
  std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%S", &tm);
  const auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() %
      1000000;
  char out[64];
  std::snprintf(out, sizeof out, "%s.%06lldZ", b, (long long)us);
  return out;
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

json openai_tool_calls(const std::vector<ToolCall>& calls) {
  json out = json::array();
  for (const ToolCall& c : calls)
    out.push_back({{"id", c.id},
                   {"type", "function"},
                   {"function", {{"name", c.name}, {"arguments", dump(c.arguments)}}}});
  return out;
}

json ollama_tool_calls(const std::vector<ToolCall>& calls) {
  json out = json::array();
  for (const ToolCall& c : calls)
    out.push_back({{"id", c.id}, {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
  return out;
}

}  // namespace g4::server
