// The safety guard in `g4 serve`: POST /v1/moderations (OpenAI's shape), the per-request profile
// (the "guard" field, only stricter), the input check, the output checks of answers
// (OutputGuard) and the injection screening of tool results (src/guard/guard.h,
// tool_results.h). The guard runs on the HTTP worker thread that received the request, on its
// own Engine (never the scheduler's ExecContext); Guard serializes its calls.
#include <httplib.h>

#include <algorithm>

#include "server/api_util.h"

namespace g4::server {

namespace {

// OpenAI's 13 moderation categories and the g4 policies that feed each (ShieldGemma's four;
// user-defined policies map to none and appear only in the g4_guard extension).
// dangerous_content's definition covers weapons/explosives/terrorism and suicide instructions.
struct CategoryMap {
  const char* category;
  const char* policy;  // nullptr: no g4 policy (false / 0)
};
constexpr CategoryMap kCategories[] = {
    {"harassment", "harassment"},
    {"harassment/threatening", nullptr},
    {"hate", "hate_speech"},
    {"hate/threatening", nullptr},
    {"illicit", nullptr},
    {"illicit/violent", "dangerous_content"},
    {"self-harm", nullptr},
    {"self-harm/intent", nullptr},
    {"self-harm/instructions", "dangerous_content"},
    {"sexual", "sexually_explicit"},
    {"sexual/minors", nullptr},
    {"violence", nullptr},
    {"violence/graphic", nullptr},
};

constexpr size_t kMaxInputs = 32;

json result_json(const GuardResult& r, const std::string& profile) {
  json cats = json::object(), scores = json::object();
  for (const CategoryMap& c : kCategories) {
    bool flagged = false;
    double score = 0;
    if (c.policy) {
      for (const PolicyScore& p : r.scores) {
        if (p.policy == c.policy) {
          flagged = p.flagged;
          score = p.score;
        }
      }
    }
    cats[c.category] = flagged;
    scores[c.category] = score;
  }
  json pol = json::array();
  for (const PolicyScore& p : r.scores)
    pol.push_back({{"policy", p.policy},
                   {"score", p.score},
                   {"threshold", p.threshold},
                   {"flagged", p.flagged}});
  return {{"flagged", r.flagged},
          {"categories", cats},
          {"category_scores", scores},
          {"g4_guard",
           {{"profile", profile},
            {"policies", pol},
            {"fired", r.fired.empty() ? json(nullptr) : json(r.fired)},
            {"windows", r.windows},
            {"seconds", r.seconds}}}};
}

Guard& need_guard(ServerState& st) {
  if (!st.guard)
    throw ApiError{404, "no safety guard is loaded (start g4 serve with --guard or --guard-model)",
                   "", "guard_disabled"};
  return *st.guard;
}

// Runs the guard; errors that come from the input are 400s, the rest 500s.
GuardResult run_guard(ServerState& st, const GuardInput& in, const RiskProfile& prof,
                      const char* param) {
  Guard& g = need_guard(st);
  const size_t bytes = in.prompt.size() + in.response.size();
  if (bytes > size_t(g.options().max_input_bytes))
    throw ApiError{400,
                   "input of " + std::to_string(bytes) + " bytes exceeds the guard's limit of " +
                       std::to_string(g.options().max_input_bytes) + " bytes",
                   param, "input_too_large"};
  Result<GuardResult> r = g.check(in, prof);
  if (!r.ok()) throw ApiError{500, r.error(), "", "guard_error", "server_error"};
  st.metrics.guard_latency.observe(r.value().seconds);
  return std::move(r.value());
}

}  // namespace

void handle_moderations(ServerState& st, const httplib::Request& req, httplib::Response& res) {
  need_guard(st);
  const json j = parse_body(req);
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() != "input" && it.key() != "model" && it.key() != "policies")
      throw ApiError{400, "unknown parameter '" + it.key() + "'", it.key(), "unknown_parameter"};
  }
  auto in = j.find("input");
  if (in == j.end() || in->is_null())
    throw ApiError{400, "'input' is required", "input", "missing_field"};
  std::vector<std::string> texts;
  auto add = [&](const json& v) {
    if (v.is_string()) {
      texts.push_back(v.get<std::string>());
    } else if (v.is_object() && v.value("type", "") == "text" && v.contains("text") &&
               v["text"].is_string()) {
      texts.push_back(v["text"].get<std::string>());
    } else if (v.is_object() && v.value("type", "") == "image_url") {
      throw ApiError{400, "image inputs are not supported (text only)", "input",
                     "unsupported_parameter"};
    } else {
      throw ApiError{400, "'input' must be a string or an array of strings / text parts", "input",
                     "invalid_type"};
    }
  };
  if (in->is_array()) {
    if (in->empty()) throw ApiError{400, "'input' must not be empty", "input", "invalid_value"};
    if (in->size() > kMaxInputs)
      throw ApiError{400, "at most " + std::to_string(kMaxInputs) + " inputs per request", "input",
                     "invalid_value"};
    for (const json& v : *in) add(v);
  } else {
    add(*in);
  }
  for (const std::string& t : texts)
    if (t.empty())
      throw ApiError{400, "'input' must not hold empty texts", "input", "invalid_value"};
  // Optional g4 extension: check only these policies (built-in or the profile's own).
  RiskProfile prof = st.guard_profile;
  auto pl = j.find("policies");
  if (pl != j.end()) {
    if (!pl->is_array() || pl->empty())
      throw ApiError{400, "'policies' must be a non-empty array of policy names", "policies",
                     "invalid_type"};
    prof.policies.clear();
    for (const json& v : *pl) {
      if (!v.is_string())
        throw ApiError{400, "'policies' must hold policy names", "policies", "invalid_type"};
      const std::string name = v.get<std::string>();
      const GuardPolicy* found = nullptr;
      for (const GuardPolicy& p : st.guard_profile.policies)
        if (p.name == name) found = &p;
      if (!found) found = find_builtin_policy(name);
      if (!found)
        throw ApiError{400, "unknown policy '" + name + "'", "policies", "unknown_policy"};
      for (const GuardPolicy& p : prof.policies)
        if (p.name == name)
          throw ApiError{400, "policy '" + name + "' listed twice", "policies", "invalid_value"};
      prof.policies.push_back(*found);
    }
  }
  json results = json::array();
  for (const std::string& t : texts)
    results.push_back(result_json(run_guard(st, {t, ""}, prof, "input"), prof.name));
  send_json(res, 200,
            {{"id", random_id("modr-")}, {"model", st.guard_model_id}, {"results", results}});
}

RequestGuard request_guard(ServerState& st, const json& body) {
  RequestGuard g;
  auto it = body.find("guard");
  if (it == body.end() || it->is_null()) {
    if (!st.guard || !st.guard_input) return g;
    g.profile = st.guard_profile;
  } else {
    if (!st.guard)
      throw ApiError{400,
                     "'guard': no safety guard is loaded (start g4 serve with --guard or "
                     "--guard-model)",
                     "guard", "guard_disabled"};
    std::string field = "guard";
    Result<RiskProfile> r = apply_request_guard(st.guard_profile, st.guard_input, it->dump(),
                                                st.opts.guard_allow_relax, &field);
    if (!r.ok()) throw ApiError{400, r.error(), field, "invalid_value"};
    g.profile = std::move(r.value());
  }
  g.input = !g.profile.policies.empty() && g.profile.input;
  g.output = !g.profile.policies.empty() && g.profile.output.enabled;
  return g;
}

std::string last_user_text(const json& messages) {
  std::string text;
  for (const json& m : messages) {
    if (m.value("role", "") == "user" && m.contains("content") && m["content"].is_string())
      text = m["content"].get<std::string>();
  }
  return text;
}

void guard_input(ServerState& st, const RequestGuard& g, const std::string& text,
                 const char* param) {
  if (!g.input || text.empty()) return;
  GuardResult r;
  try {
    r = run_guard(st, {text, ""}, g.profile, param);
  } catch (const ApiError& e) {
    if (e.status < 500 || g.profile.fail == GuardFailMode::kClosed) throw;
    return;  // fail open: the guard failed, the request goes on unchecked
  }
  if (!r.flagged) return;
  float score = 0, threshold = 0;
  for (const PolicyScore& p : r.scores) {
    if (p.policy == r.fired) {
      score = p.score;
      threshold = p.threshold;
    }
  }
  st.metrics.guard_block(r.fired);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3f >= %.3f", score, threshold);
  throw ApiError{400,
                 "the request was refused by the safety guard: it violates the policy '" + r.fired +
                     "' (score " + buf + ", profile '" + g.profile.name + "')",
                 param, "content_filter"};
}

json screen_tools(ServerState& st, json& messages) {
  json out = json::array();
  if (!st.tool_screen && !st.tool_model) return out;
  const size_t n_tool = count_tool_results(messages);
  if (n_tool == 0) return out;
  // The model's view first, on the text as the client sent it (role "tool" contents).
  std::vector<std::pair<size_t, GuardResult>> model;
  if (st.tool_model && st.guard) {
    for (size_t i = 0; i < messages.size(); ++i) {
      const json& m = messages[i];
      if (!m.is_object() || m.value("role", "") != "tool" || !m.contains("content")) continue;
      std::string text;
      if (m["content"].is_string()) text = m["content"].get<std::string>();
      if (text.find_first_not_of(" \t\r\n") == std::string::npos) continue;
      GuardResult r;
      try {
        r = run_guard(st, {text, ""}, st.tool_profile, "messages");
      } catch (const ApiError& e) {
        if (e.status < 500 || st.tool_profile.fail == GuardFailMode::kClosed) throw;
        continue;  // fail open
      }
      model.emplace_back(i, std::move(r));
    }
  }
  const std::vector<ToolResultScreen> found = st.tool_screen
                                                  ? screen_tool_results(messages, st.tool_action)
                                                  : std::vector<ToolResultScreen>{};
  const char* action = st.tool_action == InjectionAction::kFlag    ? "flag"
                       : st.tool_action == InjectionAction::kStrip ? "strip"
                                                                   : "datamark";
  for (const ToolResultScreen& t : found) {
    json f = json::array();
    for (const InjectionFinding& x : t.findings) {
      f.push_back({{"kind", x.kind}, {"offset", x.offset}, {"length", x.length}});
      st.metrics.guard_tool_finding(x.kind);
    }
    out.push_back({{"message", t.message},
                   {"name", t.name.empty() ? json(nullptr) : json(t.name)},
                   {"action", action},
                   {"findings", f}});
  }
  size_t flagged = found.size();
  for (const auto& [i, r] : model) {
    const PolicyScore& p = r.scores.at(0);
    if (!p.flagged) continue;
    st.metrics.guard_tool_finding("model:" + p.policy);
    json finding = {{"kind", "model:" + p.policy}, {"score", p.score}, {"threshold", p.threshold}};
    json* entry = nullptr;
    for (json& e : out)
      if (e["message"] == i) entry = &e;
    if (entry) {
      (*entry)["findings"].push_back(finding);
    } else {
      const json& m = messages[i];
      out.push_back(
          {{"message", i},
           {"name", m.contains("name") && m["name"].is_string() ? m["name"] : json(nullptr)},
           {"action", "flag"},
           {"findings", json::array({finding})}});
      ++flagged;
    }
  }
  for (size_t i = 0; i < n_tool; ++i) st.metrics.guard_tool_result(i < flagged);
  return out;
}

// ---- OutputGuard ----

OutputGuard::OutputGuard(ServerState& st, const RequestGuard& g, std::string prompt,
                         std::vector<std::shared_ptr<SeqHandle>> hs)
    : s_(st), profile_(g.profile), prompt_(std::move(prompt)), hs_(std::move(hs)) {
  active_ = st.guard && g.output;
  for (size_t i = 0; i < hs_.size(); ++i) st_.emplace_back(profile_.output);
  // The question keeps at most its last 16 KiB (the template keeps at most half a window).
  constexpr size_t kPromptKeep = 16 * 1024;
  if (prompt_.size() > kPromptKeep) prompt_.erase(0, prompt_.size() - kPromptKeep);
}

bool OutputGuard::on_event(size_t c, const SeqEvent& e) {
  Choice& ch = st_[c];
  if (ch.stopped) return true;  // generated past a violation: discarded
  ch.gate.add(e.text, e.token >= 0);
  ch.held.push_back(e);
  return true;
}

bool OutputGuard::settle(size_t c, bool finished, const Forward& forward) {
  Choice& ch = st_[c];
  if (ch.stopped || ch.held.empty()) return true;
  const bool unchecked = ch.gate.text().size() > ch.gate.checked_bytes();
  bool check = ch.gate.due() || (finished && unchecked);
  // Nothing but whitespace so far: nothing to judge yet (the end still checks it).
  if (check && !finished && ch.gate.text().find_first_not_of(" \t\r\n") == std::string::npos)
    check = false;
  if (check) {
    const Guard& g = *s_.guard;
    std::string response = ch.gate.text();
    const size_t limit = size_t(g.options().max_input_bytes) - prompt_.size();
    if (response.size() > limit) response.erase(0, response.size() - limit);
    s_.metrics.guard_output_check();
    Result<GuardResult> r = response.find_first_not_of(" \t\r\n") == std::string::npos
                                ? Result<GuardResult>(GuardResult{})
                                : s_.guard->check({prompt_, response}, profile_);
    if (r.ok()) s_.metrics.guard_latency.observe(r.value().seconds);
    if (!r.ok() && profile_.fail == GuardFailMode::kClosed) {
      ch.stopped = true;
      ch.policy = "guard_error";
    } else if (r.ok() && r.value().flagged) {
      ch.stopped = true;
      ch.policy = r.value().fired;
      for (const PolicyScore& p : r.value().scores) {
        if (p.policy == ch.policy) {
          ch.score = p.score;
          ch.threshold = p.threshold;
        }
      }
    }
    if (ch.stopped) {
      ch.held.clear();
      hs_[c]->cancel();
      s_.metrics.guard_output_stop(ch.policy);
      return true;
    }
    ch.gate.passed();
  } else if (!finished || unchecked) {
    return true;  // keep holding
  }
  std::vector<SeqEvent> out;
  out.swap(ch.held);
  for (const SeqEvent& e : out)
    if (!forward(c, e)) return false;
  return true;
}

json OutputGuard::info(size_t c) const {
  const Choice& ch = st_[c];
  json j = {{"output_checks", ch.gate.checks() + (ch.stopped ? 1 : 0)}, {"profile", profile_.name}};
  if (ch.stopped) {
    j["stopped_by"] = ch.policy;
    if (ch.policy != "guard_error") {
      j["score"] = ch.score;
      j["threshold"] = ch.threshold;
    }
  }
  return j;
}

}  // namespace g4::server
