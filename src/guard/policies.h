// Safety policies and risk profiles for the guard (guard/guard.h).
//
// A policy is a name and two guideline sentences in ShieldGemma's form, one for judging a user
// prompt ("The prompt shall not contain or seek generation of content that ...") and one for
// judging a model response ("The chatbot shall not generate content that ..."). The four
// policies ShieldGemma was trained on are built in, with Google's published wording (model
// card, "Guidelines to use in prompts"); operators add their own in plain language.
// A risk profile maps policy names to thresholds on P("Yes"): a score >= threshold flags.
// Everything here is data and parsing; nothing loads a model.
#pragma once
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace g4 {

struct GuardPolicy {
  std::string name;                // [a-z0-9_-]{1,64}, e.g. "dangerous_content"
  std::string prompt_guideline;    // principle text used in the prompt-only form
  std::string response_guideline;  // principle text used in the prompt+response form
  bool builtin = false;
};

// dangerous_content, harassment, hate_speech, sexually_explicit (ShieldGemma's published text).
const std::vector<GuardPolicy>& builtin_policies();
// A built-in policy by name, or nullptr.
const GuardPolicy* find_builtin_policy(std::string_view name);

// A user-defined policy: `description` is what the content must not do, in plain language
// ("discuss competitors' pricing"); the guideline becomes
//   "No <Title>": The prompt shall not contain or seek generation of content that <description>
// (and the chatbot form for responses). Errors name the bad field.
Result<GuardPolicy> make_custom_policy(std::string_view name, std::string_view description);
Status check_policy_name(std::string_view name);

enum class GuardFailMode { kOpen, kClosed };  // what a chat request gets when the guard fails

// When generated text is checked (prompt+response form): at a sentence end once min_tokens
// new tokens have come since the last check, and after every_tokens new tokens whatever the
// text (0: never by count), and at the end of the answer (with neither, only there).
// enabled = false: output unchecked.
struct OutputCheckOptions {
  bool enabled = true;
  bool sentence_end = true;
  int every_tokens = 64;
  int min_tokens = 8;
};

struct RiskProfile {
  std::string name;                         // "strict" | "balanced" | "permissive" | file name
  float default_threshold = 0.5f;           // for policies without their own entry
  std::map<std::string, float> thresholds;  // per policy
  std::vector<GuardPolicy> policies;        // policies this profile checks, in order
  GuardFailMode fail = GuardFailMode::kClosed;
  bool input = true;  // prompts are checked (false: answers only)
  OutputCheckOptions output;
  float threshold(const std::string& policy) const;
};

// strict (0.3), balanced (0.5), permissive (0.8) over the four built-in policies.
Result<RiskProfile> builtin_profile(std::string_view name);

// A profile file (JSON, untrusted):
//   {"name": "...", "base": "balanced", "default_threshold": 0.5,
//    "thresholds": {"harassment": 0.4, ...},
//    "policies": ["dangerous_content", {"name": "pricing", "description": "..."}],
//    "fail": "open" | "closed", "input": true,
//    "output": {"check": true, "sentence_end": true, "every_tokens": 64, "min_tokens": 8}}
// ("output": false turns output checks off). Every key is optional; "policies" defaults to the base
// profile's (the four built-ins). Thresholds must lie in [0, 1] and name a checked policy; errors
// say which field is wrong.
Result<RiskProfile> parse_profile_json(std::string_view text);
// "strict" | "balanced" | "permissive", else a path to a profile file.
Result<RiskProfile> load_profile(const std::string& name_or_path);

// A request's own guard settings (the server's `"guard"` extension field, untrusted JSON text):
//   {"profile": "strict", "thresholds": {"harassment": 0.2},
//    "policies": ["hate_speech", {"name": "pricing", "description": "quotes prices"}]}
// applied over the operator's profile `op` (active = false: the operator checks nothing and
// `op` only lends its policy definitions). "profile" sets every threshold to that built-in
// profile's; "thresholds" sets single policies (a built-in one not yet checked is added);
// "policies" adds policies. The result may only be stricter than the operator's: every policy
// the operator checks stays checked at a threshold no higher than the operator's. Anything
// else is an error unless allow_relax. Errors name the field ("guard.thresholds.harassment")
// in *field and say what is wrong.
Result<RiskProfile> apply_request_guard(const RiskProfile& op, bool active, std::string_view text,
                                        bool allow_relax, std::string* field);

}  // namespace g4
