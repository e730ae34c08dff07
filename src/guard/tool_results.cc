#include "guard/tool_results.h"

namespace g4 {

namespace {

using ojson = nlohmann::ordered_json;

void screen_strings(ojson& v, InjectionAction action, std::vector<InjectionFinding>& found) {
  if (v.is_string()) {
    InjectionReport r = screen_untrusted(v.get_ref<const std::string&>(), action);
    if (!r.suspicious) return;
    found.insert(found.end(), r.findings.begin(), r.findings.end());
    if (action != InjectionAction::kFlag) v = std::move(r.text);
  } else if (v.is_array() || v.is_object()) {
    for (auto& x : v) screen_strings(x, action, found);
  }
}

std::string name_of(const ojson& o) {
  auto it = o.find("name");
  return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool is_tool(const ojson& m) {
  auto it = m.find("role");
  return it != m.end() && *it == "tool";
}

}  // namespace

std::vector<ToolResultScreen> screen_tool_results(ojson& messages, InjectionAction action) {
  std::vector<ToolResultScreen> out;
  if (!messages.is_array()) return out;
  for (size_t i = 0; i < messages.size(); ++i) {
    ojson& m = messages[i];
    if (!m.is_object()) continue;
    auto screen = [&](ojson& v, const std::string& name) {
      ToolResultScreen s;
      s.message = i;
      s.name = name;
      if (v.is_array()) {  // text parts: their "text" fields only
        for (auto& part : v)
          if (part.is_object() && part.contains("text"))
            screen_strings(part["text"], action, s.findings);
      } else {
        screen_strings(v, action, s.findings);
      }
      if (!s.findings.empty()) out.push_back(std::move(s));
    };
    if (is_tool(m) && m.contains("content")) screen(m["content"], name_of(m));
    if (m.contains("tool_responses") && m["tool_responses"].is_array()) {
      for (auto& tr : m["tool_responses"])
        if (tr.is_object() && tr.contains("response")) screen(tr["response"], name_of(tr));
    }
  }
  return out;
}

size_t count_tool_results(const ojson& messages) {
  size_t n = 0;
  if (!messages.is_array()) return n;
  for (const ojson& m : messages) {
    if (!m.is_object()) continue;
    if (is_tool(m) && m.contains("content")) ++n;
    if (m.contains("tool_responses") && m["tool_responses"].is_array())
      for (const ojson& tr : m["tool_responses"])
        if (tr.is_object() && tr.contains("response")) ++n;
  }
  return n;
}

bool parse_injection_action(std::string_view s, InjectionAction* a) {
  if (s == "flag") {
    *a = InjectionAction::kFlag;
  } else if (s == "strip") {
    *a = InjectionAction::kStrip;
  } else if (s == "datamark") {
    *a = InjectionAction::kDatamark;
  } else {
    return false;
  }
  return true;
}

}  // namespace g4
