// The safety guard in `g4 serve`: POST /v1/moderations (OpenAI's shape) and the input check of
// chat requests (src/guard/guard.h). The guard runs on the HTTP worker thread that received the
// request, on its own Engine (never the scheduler's ExecContext); Guard serializes its calls.
#include <httplib.h>

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

void guard_chat_input(ServerState& st, const json& messages) {
  if (!st.guard || !st.guard_input) return;
  // The last user message is what the request adds; earlier turns were checked when sent.
  std::string text;
  for (const json& m : messages) {
    if (m.value("role", "") == "user" && m.contains("content") && m["content"].is_string())
      text = m["content"].get<std::string>();
  }
  if (text.empty()) return;
  GuardResult r;
  try {
    r = run_guard(st, {text, ""}, st.guard_profile, "messages");
  } catch (const ApiError& e) {
    if (e.status < 500 || st.guard_profile.fail == GuardFailMode::kClosed) throw;
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
                     "' (score " + buf + ", profile '" + st.guard_profile.name + "')",
                 "messages", "content_filter"};
}

}  // namespace g4::server
