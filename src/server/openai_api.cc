// OpenAI-compatible endpoints: /v1/chat/completions, /v1/completions, /v1/models.
#include <random>

#include "server/api_util.h"

namespace g4::server {

namespace {

struct OaiRequest {
  bool chat = true;
  bool stream = false;
  bool include_usage = false;
  int n = 1;
  int logprobs = -1;  // -1 off; k >= 0 top-k alternatives
  std::vector<SeqRequest> seqs;
  std::shared_ptr<AgentPlan> plan;    // chat: tools, thinking, output parsing
  RequestGuard guard;                 // safety guard: input/output checks and their profile
  std::string guard_prompt;           // the question output checks judge the answer against
  json tool_results = json::array();  // injection findings in the request's tool results
};

// The response's g4_guard extension: tool-result findings and each choice's output checks;
// null when the guard did nothing for this request.
json guard_extension(const OaiRequest& o, const OutputGuard& og, size_t first, size_t count) {
  if (!og.active() && o.tool_results.empty()) return nullptr;
  json j = json::object();
  if (og.active()) {
    json out = json::array();
    for (size_t c = first; c < first + count; ++c) out.push_back(og.info(c));
    j["output"] = out;
  }
  if (!o.tool_results.empty()) j["tool_results"] = o.tool_results;
  return j;
}

// Fields shared by both endpoints -> one SeqRequest per choice.
OaiRequest parse_common(ServerState& st, const json& j, std::vector<int32_t> prompt, bool chat,
                        std::shared_ptr<AgentPlan> plan = nullptr) {
  OaiRequest o;
  o.chat = chat;
  o.plan = std::move(plan);
  if (!chat) {
    refuse_if_set(j, "tools", "tools need /v1/chat/completions");
    refuse_if_set(j, "tool_choice", "tools need /v1/chat/completions");
  }
  refuse_if_set(j, "audio", "this model reads and writes text only");
  refuse_if_set(j, "prediction", "predicted outputs are not implemented");
  int64_t best_of = 1;
  if (get_int(j, "best_of", 1, 1, &best_of)) {
  }
  bool echo = false;
  if (get_bool(j, "echo", &echo) && echo)
    throw ApiError{400, "'echo' is not supported", "echo", "unsupported_parameter"};
  std::string suffix;
  if (get_string(j, "suffix", &suffix) && !suffix.empty())
    throw ApiError{400, "'suffix' is not supported", "suffix", "unsupported_parameter"};
  std::string user;
  get_string(j, "user", &user);  // accepted, only for the client's own bookkeeping

  GenerateOptions g;
  SamplingParams& sp = g.sampling;
  sp.temperature = 1.0f;  // OpenAI defaults: plain sampling unless the client narrows it
  sp.top_p = 1.0f;
  sp.top_k = 0;
  sp.min_p = 0.0f;
  double d;
  int64_t i;
  if (get_number(j, "temperature", 0, 2, &d)) sp.temperature = float(d);
  if (get_number(j, "top_p", 0, 1, &d)) {
    if (d <= 0) throw ApiError{400, "'top_p' must be greater than 0", "top_p", "invalid_value"};
    sp.top_p = float(d);
  }
  if (get_number(j, "presence_penalty", -2, 2, &d)) sp.presence_penalty = float(d);
  if (get_number(j, "frequency_penalty", -2, 2, &d)) sp.frequency_penalty = float(d);
  if (get_int(j, "top_k", 0, 1 << 20, &i)) sp.top_k = int(i);
  if (get_number(j, "min_p", 0, 1, &d)) sp.min_p = float(d);
  if (get_number(j, "repetition_penalty", 0.01, 10, &d)) sp.repetition_penalty = float(d);
  if (get_number(j, "repeat_penalty", 0.01, 10, &d)) sp.repetition_penalty = float(d);
  uint64_t seed = std::random_device{}();
  if (get_int(j, "seed", INT64_MIN, INT64_MAX, &i)) seed = uint64_t(i);
  const int64_t room = st.sched->n_ctx() - int64_t(prompt.size());
  if (room <= 0) {
    throw ApiError{400,
                   "the prompt has " + std::to_string(prompt.size()) +
                       " tokens, which does not fit the context of " +
                       std::to_string(st.sched->n_ctx()) + " tokens",
                   chat ? "messages" : "prompt", "context_length_exceeded"};
  }
  int64_t max_tokens = room;
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    if (get_int(j, key, 1, INT32_MAX, &i)) {
      if (i > room) {
        throw ApiError{400,
                       std::string("'") + key + "' = " + std::to_string(i) + " plus the prompt's " +
                           std::to_string(prompt.size()) + " tokens exceeds the context of " +
                           std::to_string(st.sched->n_ctx()) + " tokens",
                       key, "context_length_exceeded"};
      }
      max_tokens = i;
    }
  }
  g.max_tokens = int(max_tokens);
  get_stop(j, "stop", &g.stop);
  g.logit_bias = parse_logit_bias(j, st.engine->tokenizer().size());
  if (o.plan)
    apply_plan(*o.plan, st.engine->tokenizer(), g);
  else
    g.constraint = openai_constraint(st, j);
  // llama.cpp's and vLLM's extra: generate through end-of-turn tokens (benchmarks).
  bool ignore_eos = false;
  if (get_bool(j, "ignore_eos", &ignore_eos)) g.stop_at_eog = !ignore_eos;
  if (get_int(j, "n", 1, st.opts.max_n, &i)) o.n = int(i);
  get_bool(j, "stream", &o.stream);
  if (j.contains("stream_options") && !j["stream_options"].is_null()) {
    const json& so = j["stream_options"];
    if (!so.is_object())
      throw ApiError{400, "'stream_options' must be an object", "stream_options", "invalid_type"};
    if (!o.stream)
      throw ApiError{400, "'stream_options' is only allowed with stream: true", "stream_options",
                     "invalid_value"};
    get_bool(so, "include_usage", &o.include_usage);
  }
  if (chat) {
    bool lp = false;
    get_bool(j, "logprobs", &lp);
    if (get_int(j, "top_logprobs", 0, 20, &i)) {
      if (!lp)
        throw ApiError{400, "'top_logprobs' requires 'logprobs': true", "top_logprobs",
                       "invalid_value"};
      o.logprobs = int(i);
    } else if (lp) {
      o.logprobs = 0;
    }
  } else if (get_int(j, "logprobs", 0, 5, &i)) {
    o.logprobs = int(i);
  }
  for (int c = 0; c < o.n; ++c) {
    SeqRequest r;
    r.prompt = prompt;
    r.gen = g;
    r.gen.sampling.seed = seed + uint64_t(c);
    r.top_logprobs = o.logprobs;
    o.seqs.push_back(std::move(r));
  }
  return o;
}

json token_bytes(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(int(c));
  return b;
}

// Chat-style logprobs entry for one token.
json chat_logprob(const Tokenizer& tok, const SeqEvent& e) {
  const std::string t = tok.piece(e.token);
  json top = json::array();
  for (const auto& a : e.top) {
    const std::string s = tok.piece(a.id);
    top.push_back({{"token", s}, {"logprob", a.logprob}, {"bytes", token_bytes(s)}});
  }
  return {{"token", t}, {"logprob", e.logprob}, {"bytes", token_bytes(t)}, {"top_logprobs", top}};
}

// Completion-style (legacy) logprobs accumulator.
struct LegacyLogprobs {
  json tokens = json::array(), token_logprobs = json::array(), top = json::array(),
       offsets = json::array();
  size_t offset = 0;
  void add(const Tokenizer& tok, const SeqEvent& e) {
    const std::string t = tok.piece(e.token);
    tokens.push_back(t);
    token_logprobs.push_back(e.logprob);
    json m = json::object();
    for (const auto& a : e.top) m[tok.piece(a.id)] = a.logprob;
    top.push_back(m);
    offsets.push_back(offset);
    offset += t.size();
  }
  json to_json() const {
    return {{"tokens", tokens},
            {"token_logprobs", token_logprobs},
            {"top_logprobs", top},
            {"text_offset", offsets}};
  }
};

json usage_json(const std::vector<SeqSummary>& sums) {
  int gen = 0;
  for (const auto& s : sums) gen += s.n_generated;
  const int prompt = sums.empty() ? 0 : sums[0].n_prompt;
  const int cached = sums.empty() ? 0 : sums[0].n_cached;
  return {{"prompt_tokens", prompt},
          {"completion_tokens", gen},
          {"total_tokens", prompt + gen},
          {"prompt_tokens_details", {{"cached_tokens", cached}}}};
}

void check_errors(const std::vector<SeqSummary>& sums) {
  for (const auto& s : sums) {
    if (s.finish_reason == "error")
      throw ApiError{500, "generation failed: " + s.error, "", "internal_error", "server_error"};
    if (cut_by_shutdown(s)) throw shutdown_error(s);
  }
}

// OpenAI's finish_reason is a closed set; an answer cut short by shutdown is "length"
// (truncated), after an error event that says why.
std::string finish_name(const std::string& r) {
  return r == "length" || r == "shutdown" ? "length" : "stop";
}

void respond(ServerState& st, const httplib::Request&, httplib::Response& res, OaiRequest o) {
  auto hs = submit_all(st, o.seqs);
  auto og = std::make_shared<OutputGuard>(st, o.guard, o.guard_prompt, hs);
  const std::string id = random_id(o.chat ? "chatcmpl-" : "cmpl-");
  const long long created = (long long)unix_now();
  const std::string obj = o.chat ? "chat.completion" : "text_completion";
  if (!o.stream) {
    struct Collected {
      std::vector<std::string> texts;
      std::vector<json> chat_lp;
      std::vector<LegacyLogprobs> legacy;
    };
    auto acc = std::make_shared<Collected>();
    acc->texts.resize(hs.size());
    acc->chat_lp.assign(hs.size(), json::array());
    acc->legacy.resize(hs.size());
    const size_t n = hs.size();
    respond_collected(
        st, res, std::move(hs),
        [acc, &st, o](size_t c, const SeqEvent& e) {
          const Tokenizer& tok = st.engine->tokenizer();
          acc->texts[c] += e.text;
          if (o.logprobs >= 0 && e.token >= 0) {
            if (o.chat)
              acc->chat_lp[c].push_back(chat_logprob(tok, e));
            else
              acc->legacy[c].add(tok, e);
          }
        },
        [acc, &st, o, og, n, id, obj, created](const std::vector<SeqSummary>& sums) {
          check_errors(sums);
          json choices = json::array();
          for (size_t c = 0; c < n; ++c) {
            json ch = {{"index", c}, {"finish_reason", finish_name(sums[c].finish_reason)}};
            if (og->active() && og->stopped(c)) ch["finish_reason"] = "content_filter";
            if (o.chat && o.plan && o.plan->parse) {
              // Reasoning, answer and tool calls, read from the whole output.
              auto p = make_output_parser(o.plan->fmt, o.plan->agent, random_id("call_") + "_");
              OutputDelta d = p->push(acc->texts[c]);
              append_delta(d, p->finish());
              json msg = {{"role", "assistant"},
                          {"content", d.content.empty() && !d.calls.empty() ? json(nullptr)
                                                                            : json(d.content)}};
              if (!d.reasoning.empty()) msg["reasoning_content"] = d.reasoning;
              if (!d.calls.empty()) {
                msg["tool_calls"] = openai_tool_calls(d.calls);
                if (ch["finish_reason"] == "stop") ch["finish_reason"] = "tool_calls";
              }
              ch["message"] = std::move(msg);
              ch["logprobs"] = o.logprobs >= 0 ? json{{"content", acc->chat_lp[c]}} : json(nullptr);
            } else if (o.chat) {
              ch["message"] = {{"role", "assistant"}, {"content", acc->texts[c]}};
              ch["logprobs"] = o.logprobs >= 0 ? json{{"content", acc->chat_lp[c]}} : json(nullptr);
            } else {
              ch["text"] = acc->texts[c];
              ch["logprobs"] = o.logprobs >= 0 ? acc->legacy[c].to_json() : json(nullptr);
            }
            choices.push_back(ch);
          }
          json out{{"id", id},
                   {"object", obj},
                   {"created", created},
                   {"model", st.model_id},
                   {"system_fingerprint", "g4-0.1.0"},
                   {"choices", choices},
                   {"usage", usage_json(sums)}};
          json ext = guard_extension(o, *og, 0, n);
          if (!ext.is_null()) out["g4_guard"] = std::move(ext);
          return out;
        },
        false, og);
    return;
  }
  // Streaming: Server-Sent Events, one chunk per event, then [DONE].
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream",
      [&st, hs, o, og, id, created](size_t, httplib::DataSink& sink) {
        const Tokenizer& tok = st.engine->tokenizer();
        const std::string obj = o.chat ? "chat.completion.chunk" : "text_completion";
        auto send = [&](const json& j) {
          const std::string s = "data: " + dump(j) + "\n\n";
          return sink.write(s.data(), s.size());
        };
        auto chunk = [&](json choice) {
          return json{{"id", id},
                      {"object", obj},
                      {"created", created},
                      {"model", st.model_id},
                      {"system_fingerprint", "g4-0.1.0"},
                      {"choices", json::array({std::move(choice)})}};
        };
        bool ok = true;
        if (o.chat) {
          for (size_t c = 0; c < hs.size() && ok; ++c) {
            ok = send(chunk({{"index", c},
                             {"delta", {{"role", "assistant"}, {"content", ""}}},
                             {"logprobs", nullptr},
                             {"finish_reason", nullptr}}));
          }
        }
        // Chat answers read by a parser: reasoning_content, content and tool_calls deltas
        // (a call as OpenAI streams one: its id and name, then its arguments).
        std::vector<std::unique_ptr<OutputParser>> parsers;
        std::vector<int> ncalls(hs.size(), 0);
        if (o.chat && o.plan && o.plan->parse)
          for (size_t c = 0; c < hs.size(); ++c)
            parsers.push_back(
                make_output_parser(o.plan->fmt, o.plan->agent, random_id("call_") + "_"));
        auto emit = [&](size_t c, OutputDelta d, json lp) {
          std::vector<json> deltas;
          if (!d.reasoning.empty()) deltas.push_back({{"reasoning_content", d.reasoning}});
          if (!d.content.empty()) deltas.push_back({{"content", d.content}});
          for (const ToolCall& call : d.calls) {
            const int k = ncalls[c]++;
            deltas.push_back(
                {{"tool_calls",
                  json::array({{{"index", k},
                                {"id", call.id},
                                {"type", "function"},
                                {"function", {{"name", call.name}, {"arguments", ""}}}}})}});
            deltas.push_back(
                {{"tool_calls",
                  json::array(
                      {{{"index", k}, {"function", {{"arguments", dump(call.arguments)}}}}})}});
          }
          if (deltas.empty() && !lp.is_null()) deltas.push_back(json::object());
          for (size_t i = 0; i < deltas.size(); ++i) {
            json ch = {{"index", c},
                       {"delta", std::move(deltas[i])},
                       {"logprobs", i == 0 ? lp : json(nullptr)},
                       {"finish_reason", nullptr}};
            if (!send(chunk(std::move(ch)))) return false;
          }
          return true;
        };
        std::vector<SeqSummary> sums;
        if (ok) {
          const std::function<bool(size_t, const SeqEvent&)> on_event = [&](size_t c,
                                                                            const SeqEvent& e) {
            if (!parsers.empty()) {
              json lp = nullptr;
              if (o.logprobs >= 0 && e.token >= 0)
                lp = {{"content", json::array({chat_logprob(tok, e)})}};
              if (e.text.empty() && lp.is_null()) return true;
              return emit(c, parsers[c]->push(e.text), std::move(lp));
            }
            if (e.text.empty() && (o.logprobs < 0 || e.token < 0)) return true;
            json ch = {{"index", c}, {"finish_reason", nullptr}};
            json lp = nullptr;
            if (o.logprobs >= 0 && e.token >= 0) {
              if (o.chat) {
                lp = {{"content", json::array({chat_logprob(tok, e)})}};
              } else {
                LegacyLogprobs l;
                l.add(tok, e);
                lp = l.to_json();
              }
            }
            ch["logprobs"] = lp;
            if (o.chat)
              ch["delta"] = {{"content", e.text}};
            else
              ch["text"] = e.text;
            return send(chunk(ch));
          };
          auto ping = [&] {  // SSE comment: keeps proxies open, notices a client that went away
            static const char kPing[] = ": ping\n\n";
            return sink.write(kPing, sizeof kPing - 1);
          };
          if (og->active()) {
            // Output checks: events pass once the answer so far is checked (OutputGuard).
            ok = drain(
                hs, [&](size_t c, const SeqEvent& e) { return og->on_event(c, e); }, &sums, ping,
                [&](size_t c, bool fin) { return og->settle(c, fin, on_event); });
          } else {
            ok = drain(hs, on_event, &sums, ping);
          }
        }
        if (!ok) {
          st.metrics.disconnected();
          return false;
        }
        // Cut short by shutdown: an error event first, as OpenAI sends errors mid-stream (its
        // client raises on it), then the usual end with finish_reason "length".
        for (const auto& sum : sums) {
          if (!cut_by_shutdown(sum)) continue;
          send({{"error", error_json(shutdown_error(sum), false)["error"]}});
          break;
        }
        for (size_t c = 0; c < hs.size(); ++c) {
          if (sums[c].finish_reason == "error") {
            send({{"error",
                   {{"message", "generation failed: " + sums[c].error},
                    {"type", "server_error"},
                    {"param", nullptr},
                    {"code", "internal_error"}}}});
            continue;
          }
          std::string finish = finish_name(sums[c].finish_reason);
          if (!parsers.empty()) {
            if (!emit(c, parsers[c]->finish(), nullptr)) break;
            if (ncalls[c] > 0 && finish == "stop") finish = "tool_calls";
          }
          if (og->active() && og->stopped(c)) finish = "content_filter";
          json ch = {{"index", c}, {"logprobs", nullptr}, {"finish_reason", finish}};
          if (o.chat)
            ch["delta"] = json::object();
          else
            ch["text"] = "";
          json last = chunk(ch);
          json ext = guard_extension(o, *og, c, 1);
          if (!ext.is_null()) last["g4_guard"] = std::move(ext);
          send(last);
        }
        if (o.include_usage) {
          json u = chunk(json());
          u["choices"] = json::array();
          u["usage"] = usage_json(sums);
          send(u);
        }
        const std::string done = "data: [DONE]\n\n";
        sink.write(done.data(), done.size());
        sink.done();
        return true;
      },
      cancel_unless_sent(hs));
}

}  // namespace

void handle_chat_completions(ServerState& st, const httplib::Request& req, httplib::Response& res) {
  const json j = parse_body(req);
  check_model(st, j, true);
  ChatRequest cr = parse_chat_request(j, false);
  const RequestGuard g = request_guard(st, j);
  const std::string user = last_user_text(cr.messages);
  guard_input(st, g, user, "messages");
  json tools = screen_tools(st, cr.messages);  // before the prompt is built from them
  std::vector<int32_t> ids;
  auto plan = plan_agent(st, cr, openai_constraint_spec(j), &ids);
  OaiRequest o = parse_common(st, j, std::move(ids), true, std::move(plan));
  o.guard = g;
  o.guard_prompt = user;
  o.tool_results = std::move(tools);
  respond(st, req, res, std::move(o));
}

void handle_completions(ServerState& st, const httplib::Request& req, httplib::Response& res) {
  const json j = parse_body(req);
  check_model(st, j, true);
  auto it = j.find("prompt");
  if (it == j.end() || it->is_null())
    throw ApiError{400, "'prompt' is required", "prompt", "missing_field"};
  const Tokenizer& tok = st.engine->tokenizer();
  std::vector<int32_t> ids;
  const json& p = *it;
  if (p.is_string()) {
    ids = tok.encode(p.get<std::string>(), true, false);
  } else if (p.is_array() && p.size() == 1 && p[0].is_string()) {
    ids = tok.encode(p[0].get<std::string>(), true, false);
  } else if (p.is_array() && !p.empty() && p[0].is_number_integer()) {
    for (const auto& v : p) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= tok.size())
        throw ApiError{
            400, "'prompt' token ids must be integers in [0, " + std::to_string(tok.size()) + ")",
            "prompt", "invalid_value"};
      ids.push_back(int32_t(v.get<int64_t>()));
    }
  } else if (p.is_array() && p.size() > 1) {
    throw ApiError{400,
                   "several prompts in one request are not supported; send one request per prompt",
                   "prompt", "unsupported_parameter"};
  } else {
    throw ApiError{400, "'prompt' must be a string, [string] or an array of token ids", "prompt",
                   "invalid_type"};
  }
  if (ids.empty() || (ids.size() == 1 && tok.add_bos() && ids[0] == tok.bos() && p.is_string() &&
                      p.get<std::string>().empty())) {
    throw ApiError{400, "'prompt' must not be empty", "prompt", "invalid_value"};
  }
  const RequestGuard g = request_guard(st, j);
  std::string text;
  if (g.input)
    text = p.is_string()      ? p.get<std::string>()
           : p[0].is_string() ? p[0].get<std::string>()
                              : tok.decode(ids);
  guard_input(st, g, text, "prompt");
  OaiRequest o = parse_common(st, j, std::move(ids), false);
  o.guard = g;
  o.guard_prompt = std::move(text);
  respond(st, req, res, std::move(o));
}

void handle_models(ServerState& st, const httplib::Request&, httplib::Response& res) {
  json m = {{"id", st.model_id},
            {"object", "model"},
            {"created", (long long)st.created},
            {"owned_by", "g4"}};
  send_json(res, 200, {{"object", "list"}, {"data", json::array({m})}});
}

}  // namespace g4::server
