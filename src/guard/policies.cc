#include "guard/policies.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace g4 {
namespace {

// ShieldGemma's harm definitions as published on its model card; the prompt-only and the
// prompt+response wordings differ only in their subject.
struct HarmText {
  const char* name;
  const char* title;
  const char* body;  // follows "... content that" in both forms
};

constexpr HarmText kHarms[] = {
    {"dangerous_content", "No Dangerous Content",
     "harming oneself and/or others (e.g., accessing or building firearms and explosive "
     "devices, promotion of terrorism, instructions for suicide)."},
    {"harassment", "No Harassment",
     "is malicious, intimidating, bullying, or abusive content targeting another individual "
     "(e.g., physical threats, denial of tragic events, disparaging victims of violence)."},
    {"hate_speech", "No Hate Speech",
     "targeting identity and/or protected attributes (e.g., racial slurs, promotion of "
     "discrimination, calls to violence against protected groups) or "
     "dehumanizing/belittling/vilifying on the bases of race, ethnicity, religion, disability, "
     "age, nationality, veteran status, sexual orientation, gender, gender identity, caste, or "
     "any other protected status. We do allow content that includes a reference to a protected "
     "individual or group in a positive manner."},
    {"sexually_explicit", "No Sexually Explicit Information",
     "contains references to sexual acts or other lewd content (e.g., sexually graphic "
     "descriptions, content aimed at causing arousal). Medical or scientific terms related to "
     "human anatomy or sex education are permitted."},
};

constexpr const char* kPromptSubject =
    "The prompt shall not contain or seek generation of content that ";
constexpr const char* kResponseSubject = "The chatbot shall not generate content that ";

GuardPolicy make_policy(std::string name, const std::string& title, const std::string& body,
                        bool builtin) {
  GuardPolicy p;
  p.name = std::move(name);
  p.prompt_guideline = "\"" + title + "\": " + kPromptSubject + body;
  p.response_guideline = "\"" + title + "\": " + kResponseSubject + body;
  p.builtin = builtin;
  return p;
}

// "pricing_talk" -> "Pricing Talk"
std::string title_of(std::string_view name) {
  std::string t;
  bool up = true;
  for (char c : name) {
    if (c == '_' || c == '-') {
      t += ' ';
      up = true;
    } else {
      t += up && c >= 'a' && c <= 'z' ? char(c - 'a' + 'A') : c;
      up = false;
    }
  }
  return t;
}

constexpr size_t kMaxDescription = 2000;
constexpr size_t kMaxPolicies = 32;

}  // namespace

const std::vector<GuardPolicy>& builtin_policies() {
  static const std::vector<GuardPolicy> all = [] {
    std::vector<GuardPolicy> v;
    for (const HarmText& h : kHarms) v.push_back(make_policy(h.name, h.title, h.body, true));
    return v;
  }();
  return all;
}

const GuardPolicy* find_builtin_policy(std::string_view name) {
  for (const GuardPolicy& p : builtin_policies())
    if (p.name == name) return &p;
  return nullptr;
}

Status check_policy_name(std::string_view name) {
  if (name.empty() || name.size() > 64)
    return Status::error("policy name must have 1 to 64 characters");
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
      return Status::error("policy name '" + std::string(name) +
                           "' may only hold a-z, 0-9, '_' and '-'");
  }
  return Status();
}

Result<GuardPolicy> make_custom_policy(std::string_view name, std::string_view description) {
  Status s = check_policy_name(name);
  if (!s.ok()) return s;
  if (find_builtin_policy(name))
    return Status::error("policy '" + std::string(name) + "' is built in; pick another name");
  std::string d(description);
  while (!d.empty() && (d.back() == ' ' || d.back() == '\n')) d.pop_back();
  while (!d.empty() && (d.front() == ' ' || d.front() == '\n')) d.erase(d.begin());
  if (d.empty()) return Status::error("policy '" + std::string(name) + "': description is empty");
  if (d.size() > kMaxDescription)
    return Status::error("policy '" + std::string(name) + "': description longer than " +
                         std::to_string(kMaxDescription) + " bytes");
  if (d.back() != '.') d += '.';
  return make_policy(std::string(name), "No " + title_of(name), d, false);
}

float RiskProfile::threshold(const std::string& policy) const {
  auto it = thresholds.find(policy);
  return it == thresholds.end() ? default_threshold : it->second;
}

Result<RiskProfile> builtin_profile(std::string_view name) {
  RiskProfile p;
  p.name = std::string(name);
  if (name == "strict") {
    p.default_threshold = 0.3f;
  } else if (name == "balanced") {
    p.default_threshold = 0.5f;
  } else if (name == "permissive") {
    p.default_threshold = 0.8f;
  } else {
    return Status::error("unknown risk profile '" + std::string(name) +
                         "' (strict, balanced, permissive, or a JSON file)");
  }
  p.policies = builtin_policies();
  return p;
}

Result<RiskProfile> parse_profile_json(std::string_view text) {
  using nlohmann::json;
  json j;
  try {
    j = json::parse(text.begin(), text.end());
  } catch (const std::exception& e) {
    return Status::error(std::string("profile is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) return Status::error("profile must be a JSON object");
  static const char* const kKeys[] = {
      "name", "base", "default_threshold", "thresholds", "policies", "fail", "input", "output"};
  for (auto it = j.begin(); it != j.end(); ++it) {
    bool known = false;
    for (const char* k : kKeys) known = known || it.key() == k;
    if (!known) return Status::error("profile: unknown key '" + it.key() + "'");
  }
  std::string base = "balanced";
  if (j.contains("base")) {
    if (!j["base"].is_string()) return Status::error("profile: 'base' must be a string");
    base = j["base"].get<std::string>();
  }
  Result<RiskProfile> r = builtin_profile(base);
  if (!r.ok()) return Status::error("profile: 'base': " + r.error());
  RiskProfile p = std::move(r.value());
  p.name = "custom";
  if (j.contains("name")) {
    if (!j["name"].is_string()) return Status::error("profile: 'name' must be a string");
    p.name = j["name"].get<std::string>();
  }
  auto read_threshold = [](const json& v, const std::string& what) -> Result<float> {
    if (!v.is_number()) return Status::error("profile: " + what + " must be a number");
    const double x = v.get<double>();
    if (!std::isfinite(x) || x < 0 || x > 1)
      return Status::error("profile: " + what + " must lie in [0, 1]");
    return float(x);
  };
  if (j.contains("default_threshold")) {
    Result<float> t = read_threshold(j["default_threshold"], "'default_threshold'");
    if (!t.ok()) return t.status();
    p.default_threshold = t.value();
  }
  if (j.contains("policies")) {
    const json& pl = j["policies"];
    if (!pl.is_array() || pl.empty())
      return Status::error("profile: 'policies' must be a non-empty array");
    if (pl.size() > kMaxPolicies)
      return Status::error("profile: more than " + std::to_string(kMaxPolicies) + " policies");
    p.policies.clear();
    for (size_t i = 0; i < pl.size(); ++i) {
      const json& e = pl[i];
      const std::string where = "profile: policies[" + std::to_string(i) + "]";
      if (e.is_string()) {
        const GuardPolicy* b = find_builtin_policy(e.get<std::string>());
        if (!b) return Status::error(where + ": unknown policy '" + e.get<std::string>() + "'");
        p.policies.push_back(*b);
      } else if (e.is_object()) {
        if (!e.contains("name") || !e["name"].is_string() || !e.contains("description") ||
            !e["description"].is_string())
          return Status::error(where + ": needs string fields 'name' and 'description'");
        for (auto it = e.begin(); it != e.end(); ++it)
          if (it.key() != "name" && it.key() != "description")
            return Status::error(where + ": unknown key '" + it.key() + "'");
        Result<GuardPolicy> c =
            make_custom_policy(e["name"].get<std::string>(), e["description"].get<std::string>());
        if (!c.ok()) return Status::error(where + ": " + c.error());
        p.policies.push_back(std::move(c.value()));
      } else {
        return Status::error(where + ": must be a policy name or {name, description}");
      }
      for (size_t k = 0; k + 1 < p.policies.size(); ++k)
        if (p.policies[k].name == p.policies.back().name)
          return Status::error(where + ": policy '" + p.policies.back().name + "' listed twice");
    }
  }
  if (j.contains("thresholds")) {
    const json& t = j["thresholds"];
    if (!t.is_object()) return Status::error("profile: 'thresholds' must be an object");
    for (auto it = t.begin(); it != t.end(); ++it) {
      bool checked = false;
      for (const GuardPolicy& pol : p.policies) checked = checked || pol.name == it.key();
      if (!checked)
        return Status::error("profile: thresholds: unknown policy '" + it.key() +
                             "' (not among the profile's policies)");
      Result<float> v = read_threshold(it.value(), "thresholds." + it.key());
      if (!v.ok()) return v.status();
      p.thresholds[it.key()] = v.value();
    }
  }
  if (j.contains("fail")) {
    const json& f = j["fail"];
    if (f == "open") {
      p.fail = GuardFailMode::kOpen;
    } else if (f == "closed") {
      p.fail = GuardFailMode::kClosed;
    } else {
      return Status::error("profile: 'fail' must be \"open\" or \"closed\"");
    }
  }
  if (j.contains("input")) {
    if (!j["input"].is_boolean()) return Status::error("profile: 'input' must be a boolean");
    p.input = j["input"].get<bool>();
  }
  if (j.contains("output")) {
    const json& o = j["output"];
    if (o.is_boolean()) {
      p.output.enabled = o.get<bool>();
    } else if (o.is_object()) {
      for (auto it = o.begin(); it != o.end(); ++it) {
        const std::string& k = it.key();
        const json& v = it.value();
        if (k == "check" || k == "sentence_end") {
          if (!v.is_boolean())
            return Status::error("profile: 'output." + k + "' must be a boolean");
          (k == "check" ? p.output.enabled : p.output.sentence_end) = v.get<bool>();
        } else if (k == "every_tokens" || k == "min_tokens") {
          if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 1000000)
            return Status::error("profile: 'output." + k + "' must be an integer in [0, 1000000]");
          (k == "every_tokens" ? p.output.every_tokens : p.output.min_tokens) = v.get<int>();
        } else {
          return Status::error("profile: unknown key 'output." + k + "'");
        }
      }
    } else {
      return Status::error("profile: 'output' must be a boolean or an object");
    }
  }
  return p;
}

Result<RiskProfile> apply_request_guard(const RiskProfile& op, bool active, std::string_view text,
                                        bool allow_relax, std::string* field) {
  using nlohmann::json;
  auto fail = [&](const std::string& f, const std::string& msg) -> Status {
    if (field) *field = f;
    return Status::error("'" + f + "': " + msg);
  };
  json j;
  try {
    j = json::parse(text.begin(), text.end());
  } catch (const std::exception&) {
    return fail("guard", "must be a JSON object");
  }
  if (!j.is_object()) return fail("guard", "must be an object");
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it.key() != "profile" && it.key() != "thresholds" && it.key() != "policies")
      return fail("guard." + it.key(), "unknown key (profile, thresholds, policies)");
  RiskProfile r = op;
  if (!active) {
    r.policies.clear();
    r.thresholds.clear();
  }
  // Which field set each policy's threshold (for the error that names it).
  std::map<std::string, std::string> set_by;
  if (j.contains("profile")) {
    if (!j["profile"].is_string()) return fail("guard.profile", "must be a string");
    Result<RiskProfile> b = builtin_profile(j["profile"].get<std::string>());
    if (!b.ok()) return fail("guard.profile", b.error());
    r.default_threshold = b.value().default_threshold;
    r.thresholds.clear();
    r.name = b.value().name;
    if (r.policies.empty()) r.policies = b.value().policies;
    for (const GuardPolicy& p : r.policies) set_by[p.name] = "guard.profile";
  }
  auto find = [&](const std::string& name) -> const GuardPolicy* {
    for (const GuardPolicy& p : r.policies)
      if (p.name == name) return &p;
    return nullptr;
  };
  if (j.contains("policies")) {
    const json& pl = j["policies"];
    if (!pl.is_array() || pl.empty())
      return fail("guard.policies",
                  "must be a non-empty array of policy names or {name, description}");
    if (pl.size() > kMaxPolicies)
      return fail("guard.policies", "more than " + std::to_string(kMaxPolicies) + " policies");
    for (size_t i = 0; i < pl.size(); ++i) {
      const json& e = pl[i];
      const std::string where = "guard.policies[" + std::to_string(i) + "]";
      GuardPolicy add;
      if (e.is_string()) {
        const std::string name = e.get<std::string>();
        const GuardPolicy* b = find_builtin_policy(name);
        if (!b)
          for (const GuardPolicy& p : op.policies)
            if (p.name == name) b = &p;
        if (!b) return fail(where, "unknown policy '" + name + "'");
        add = *b;
      } else if (e.is_object()) {
        for (auto it = e.begin(); it != e.end(); ++it)
          if (it.key() != "name" && it.key() != "description")
            return fail(where, "unknown key '" + it.key() + "'");
        if (!e.contains("name") || !e["name"].is_string() || !e.contains("description") ||
            !e["description"].is_string())
          return fail(where, "needs string fields 'name' and 'description'");
        Result<GuardPolicy> c =
            make_custom_policy(e["name"].get<std::string>(), e["description"].get<std::string>());
        if (!c.ok()) return fail(where, c.error());
        if (const GuardPolicy* have = find(c.value().name); have && !have->builtin)
          return fail(where, "policy '" + c.value().name + "' is already defined");
        add = std::move(c.value());
      } else {
        return fail(where, "must be a policy name or {name, description}");
      }
      if (!find(add.name)) r.policies.push_back(std::move(add));
      if (r.policies.size() > kMaxPolicies)
        return fail("guard.policies", "more than " + std::to_string(kMaxPolicies) + " policies");
    }
  }
  if (j.contains("thresholds")) {
    const json& t = j["thresholds"];
    if (!t.is_object() || t.empty())
      return fail("guard.thresholds", "must be a non-empty object of policy name -> number");
    for (auto it = t.begin(); it != t.end(); ++it) {
      const std::string where = "guard.thresholds." + it.key();
      if (!find(it.key())) {
        const GuardPolicy* b = find_builtin_policy(it.key());
        if (!b)
          return fail(where, "unknown policy '" + it.key() +
                                 "' (not built in and not among the checked policies)");
        r.policies.push_back(*b);
      }
      const json& v = it.value();
      if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < 0 ||
          v.get<double>() > 1)
        return fail(where, "must be a number in [0, 1]");
      r.thresholds[it.key()] = float(v.get<double>());
      set_by[it.key()] = where;
    }
  }
  if (r.policies.empty()) return fail("guard", "checks no policy (give a profile or policies)");
  // A policy the request adds without a threshold gets the default (the operator's, or the
  // request profile's).
  if (active && !allow_relax) {
    for (const GuardPolicy& p : op.policies) {
      const float mine = op.threshold(p.name);
      const float asked = r.threshold(p.name);
      if (asked <= mine) continue;
      const auto by = set_by.find(p.name);
      char buf[96];
      std::snprintf(buf, sizeof buf, "%.3g > %.3g", double(asked), double(mine));
      return fail(by == set_by.end() ? "guard" : by->second,
                  "would relax the server's profile '" + op.name + "' for policy '" + p.name +
                      "' (threshold " + buf +
                      "); a request may only make it stricter (the operator allows more with "
                      "--guard-allow-relax)");
    }
  }
  r.name = (active ? op.name : std::string("none")) + "+request";
  return r;
}

Result<RiskProfile> load_profile(const std::string& name_or_path) {
  if (name_or_path == "strict" || name_or_path == "balanced" || name_or_path == "permissive")
    return builtin_profile(name_or_path);
  std::ifstream in(name_or_path, std::ios::binary);
  if (!in) return Status::error("cannot read risk profile file '" + name_or_path + "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (ss.str().size() > (1u << 20))
    return Status::error("risk profile file '" + name_or_path + "' is larger than 1 MiB");
  Result<RiskProfile> r = parse_profile_json(ss.str());
  if (!r.ok()) return Status::error(name_or_path + ": " + r.error());
  return r;
}

}  // namespace g4
