#include "agent/request.h"

#include <map>
#include <set>

namespace g4 {

namespace {

[[noreturn]] void fail(std::string msg, std::string param, std::string code = "invalid_value") {
  throw RequestError{std::move(msg), std::move(param), std::move(code)};
}

const ojson* field(const ojson& j, const char* key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

std::string str_field(const ojson& j, const char* key, const std::string& where, bool required) {
  const ojson* f = field(j, key);
  if (!f) {
    if (required) fail(where + "." + key + " is required", where + "." + key, "missing_field");
    return {};
  }
  if (!f->is_string())
    fail(where + "." + key + " must be a string", where + "." + key, "invalid_type");
  return f->get<std::string>();
}

// Message content: a string, or parts of which only text is readable here.
std::string content_text(const ojson& c, const std::string& where) {
  if (c.is_string()) return c.get<std::string>();
  if (!c.is_array())
    fail(where + " must be a string or an array of text parts", where, "invalid_type");
  std::string out;
  for (size_t i = 0; i < c.size(); ++i) {
    const ojson& part = c[i];
    const std::string p = where + "[" + std::to_string(i) + "]";
    if (!part.is_object()) fail(p + " must be an object", p, "invalid_type");
    const std::string type = str_field(part, "type", p, true);
    if (type != "text")
      fail(p + " has type '" + type + "'; this model reads text only", p + ".type");
    out += str_field(part, "text", p, true);
  }
  return out;
}

// Arguments of a call: an object, or (OpenAI) a JSON string holding one.
ojson call_arguments(const ojson* a, const std::string& where) {
  if (!a) return ojson::object();
  if (a->is_object()) return *a;
  if (a->is_string()) {
    const std::string& s = a->get_ref<const std::string&>();
    if (s.empty()) return ojson::object();
    ojson v = ojson::parse(s, nullptr, false);
    if (v.is_discarded() || !v.is_object())
      fail(where + " must be a JSON object (as a string or an object)", where);
    return v;
  }
  fail(where + " must be a JSON object (as a string or an object)", where, "invalid_type");
}

bool valid_tool_name(const std::string& n) {
  if (n.empty() || n.size() > 64) return false;
  for (char c : n)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.'))
      return false;
  return true;
}

ojson parse_messages(const ojson& body, bool ollama) {
  const ojson* f = field(body, "messages");
  if (!f) fail("'messages' is required", "messages", "missing_field");
  if (!f->is_array()) fail("'messages' must be an array", "messages", "invalid_type");
  if (f->empty()) fail("'messages' must not be empty", "messages");
  ojson out = ojson::array();
  int auto_id = 0;
  for (size_t i = 0; i < f->size(); ++i) {
    const ojson& m = (*f)[i];
    const std::string p = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) fail(p + " must be an object", p, "invalid_type");
    std::string role = str_field(m, "role", p, true);
    if (role == "developer") role = "system";
    if (role != "system" && role != "user" && role != "assistant" && role != "tool")
      fail(p + ".role '" + role + "' is not supported (system, developer, user, assistant, tool)",
           p + ".role");
    if (const ojson* im = field(m, "images"); im && !(im->is_array() && im->empty()))
      fail(p + ".images: this model reads text only", p + ".images");
    ojson n = {{"role", role}};
    const ojson* tc = role == "assistant" ? field(m, "tool_calls") : nullptr;
    const ojson* c = field(m, "content");
    if (c)
      n["content"] = content_text(*c, p + ".content");
    else if (!tc)
      fail(p + ".content is required", p + ".content", "missing_field");
    else
      n["content"] = "";
    if (role != "assistant" && field(m, "tool_calls"))
      fail(p + ".tool_calls is only allowed on assistant messages", p + ".tool_calls");
    if (tc) {
      if (!tc->is_array())
        fail(p + ".tool_calls must be an array", p + ".tool_calls", "invalid_type");
      ojson calls = ojson::array();
      for (size_t k = 0; k < tc->size(); ++k) {
        const ojson& call = (*tc)[k];
        const std::string q = p + ".tool_calls[" + std::to_string(k) + "]";
        if (!call.is_object()) fail(q + " must be an object", q, "invalid_type");
        const std::string type = str_field(call, "type", q, false);
        if (!type.empty() && type != "function")
          fail(q + ".type must be \"function\"", q + ".type");
        const ojson* fn = field(call, "function");
        if (!fn || !fn->is_object())
          fail(q + ".function must be an object with a name", q + ".function", "missing_field");
        const std::string name = str_field(*fn, "name", q + ".function", true);
        if (name.empty()) fail(q + ".function.name must not be empty", q + ".function.name");
        std::string id = str_field(call, "id", q, !ollama);
        if (id.empty()) id = "call_" + std::to_string(auto_id++);
        calls.push_back({{"id", id},
                         {"type", "function"},
                         {"function",
                          {{"name", name},
                           {"arguments",
                            call_arguments(field(*fn, "arguments"), q + ".function.arguments")}}}});
      }
      if (!calls.empty()) n["tool_calls"] = std::move(calls);
    }
    if (role == "assistant") {
      std::string r = str_field(m, ollama ? "thinking" : "reasoning_content", p, false);
      if (!r.empty()) n["reasoning_content"] = r;
    }
    if (role == "tool") {
      const std::string id = str_field(m, "tool_call_id", p, !ollama);
      if (!id.empty()) n["tool_call_id"] = id;
      std::string name = str_field(m, "tool_name", p, false);
      if (name.empty()) name = str_field(m, "name", p, false);
      if (!name.empty()) n["name"] = name;
    }
    out.push_back(std::move(n));
  }
  return out;
}

std::vector<ToolDef> parse_tools(const ojson& body) {
  std::vector<ToolDef> tools;
  const ojson* f = field(body, "tools");
  if (!f) return tools;
  if (!f->is_array()) fail("'tools' must be an array", "tools", "invalid_type");
  if (f->size() > 128) fail("'tools' has more than 128 tools", "tools");
  std::set<std::string> seen;
  for (size_t i = 0; i < f->size(); ++i) {
    const ojson& t = (*f)[i];
    const std::string p = "tools[" + std::to_string(i) + "]";
    if (!t.is_object()) fail(p + " must be an object", p, "invalid_type");
    const std::string type = str_field(t, "type", p, false);
    if (!type.empty() && type != "function")
      fail(p + ".type '" + type + "' is not supported (function)", p + ".type");
    const ojson* fn = field(t, "function");
    if (!fn || !fn->is_object())
      fail(p + ".function must be an object with a name", p + ".function", "missing_field");
    ToolDef d;
    d.name = str_field(*fn, "name", p + ".function", true);
    if (!valid_tool_name(d.name))
      fail(p + ".function.name '" + d.name +
               "' must be 1-64 letters, digits, underscores, dots or dashes",
           p + ".function.name");
    if (!seen.insert(d.name).second)
      fail(p + ".function.name '" + d.name + "' is declared twice", p + ".function.name");
    d.description = str_field(*fn, "description", p + ".function", false);
    const ojson* params = field(*fn, "parameters");
    if (!params) {
      d.parameters = {{"type", "object"}, {"properties", ojson::object()}};
    } else {
      if (!params->is_object())
        fail(p + ".function.parameters must be a JSON Schema object", p + ".function.parameters",
             "invalid_type");
      const ojson* ty = field(*params, "type");
      if (ty && *ty != "object")
        fail(p + ".function.parameters must describe an object (type \"object\")",
             p + ".function.parameters.type");
      d.parameters = *params;
      if (!ty) d.parameters["type"] = "object";
    }
    tools.push_back(std::move(d));
  }
  return tools;
}

void parse_tool_choice(const ojson& body, AgentOptions& a) {
  const ojson* f = field(body, "tool_choice");
  if (!f) return;
  if (f->is_string()) {
    const std::string s = f->get<std::string>();
    if (s == "auto")
      a.tool_choice = ToolChoice::kAuto;
    else if (s == "none")
      a.tool_choice = ToolChoice::kNone;
    else if (s == "required" || s == "any")
      a.tool_choice = ToolChoice::kRequired;
    else
      fail(
          "'tool_choice' must be auto, none, required or {\"type\": \"function\", \"function\": "
          "{\"name\": ...}}, not '" +
              s + "'",
          "tool_choice");
    return;
  }
  if (!f->is_object())
    fail("'tool_choice' must be a string or an object", "tool_choice", "invalid_type");
  const std::string type = str_field(*f, "type", "tool_choice", false);
  if (!type.empty() && type != "function")
    fail("tool_choice.type must be \"function\"", "tool_choice.type");
  const ojson* fn = field(*f, "function");
  if (!fn || !fn->is_object())
    fail("tool_choice.function must be an object with a name", "tool_choice.function",
         "missing_field");
  a.tool_choice = ToolChoice::kNamed;
  a.tool_name = str_field(*fn, "name", "tool_choice.function", true);
}

void parse_budget(const ojson& body, AgentOptions& a) {
  const ojson* b = field(body, "thinking_budget");
  if (!b) return;
  if (!b->is_number_integer() || b->get<int64_t>() < 0 || b->get<int64_t>() > (1 << 24))
    fail("'thinking_budget' must be an integer number of tokens in [0, 16777216]",
         "thinking_budget", "invalid_type");
  a.thinking_budget = int(b->get<int64_t>());
}

void parse_bool(const ojson& j, const char* key, const std::string& param, bool* out) {
  const ojson* f = field(j, key);
  if (!f) return;
  if (!f->is_boolean()) fail("'" + param + "' must be a boolean", param, "invalid_type");
  *out = f->get<bool>();
}

}  // namespace

void check_agent_request(const ChatRequest& r) {
  const AgentOptions& a = r.agent;
  if (a.tool_choice == ToolChoice::kRequired && a.tools.empty())
    fail("'tool_choice' is required but no 'tools' are declared", "tool_choice");
  if (a.tool_choice == ToolChoice::kNamed) {
    bool found = false;
    for (const auto& t : a.tools) found |= t.name == a.tool_name;
    if (!found)
      fail("tool_choice names '" + a.tool_name + "', which is not among the declared tools",
           "tool_choice.function.name");
  }
  // Every tool result answers a call made earlier: by id (OpenAI), or by name when the client
  // sends none (Ollama), else the oldest unanswered call.
  std::map<std::string, std::string> open;  // id -> name of calls not yet answered
  std::vector<std::string> order;
  for (size_t i = 0; i < r.messages.size(); ++i) {
    const ojson& m = r.messages[i];
    const std::string p = "messages[" + std::to_string(i) + "]";
    if (m["role"] == "assistant" && m.contains("tool_calls")) {
      for (const auto& c : m["tool_calls"]) {
        open[c["id"].get<std::string>()] = c["function"]["name"].get<std::string>();
        order.push_back(c["id"].get<std::string>());
      }
    } else if (m["role"] == "tool") {
      std::string id = m.value("tool_call_id", "");
      const std::string name = m.value("name", "");
      if (id.empty()) {
        for (const auto& o : order)
          if (open.count(o) && (name.empty() || open[o] == name)) {
            id = o;
            break;
          }
        if (id.empty())
          fail(p + " is a tool result" + (name.empty() ? "" : " for '" + name + "'") +
                   " but no earlier assistant message made a matching tool call",
               p);
      } else if (!open.count(id)) {
        fail(p + ".tool_call_id '" + id +
                 "' does not answer any tool call of an earlier assistant message",
             p + ".tool_call_id");
      }
      open.erase(id);
    }
  }
}

ChatRequest parse_openai_chat(const ojson& body) {
  if (!body.is_object()) fail("the body must be a JSON object", "", "invalid_type");
  for (const char* k : {"functions", "function_call"})
    if (field(body, k))
      fail(std::string("'") + k + "' is the deprecated form; use 'tools' and 'tool_choice'", k,
           "unsupported_parameter");
  ChatRequest r;
  r.messages = parse_messages(body, false);
  r.agent.tools = parse_tools(body);
  parse_tool_choice(body, r.agent);
  parse_bool(body, "parallel_tool_calls", "parallel_tool_calls", &r.agent.parallel_tool_calls);
  if (const ojson* e = field(body, "reasoning_effort")) {
    static const std::set<std::string> kEfforts = {"none", "minimal", "low", "medium", "high"};
    if (!e->is_string() || !kEfforts.count(e->get<std::string>()))
      fail("'reasoning_effort' must be none, minimal, low, medium or high", "reasoning_effort");
    r.agent.thinking = *e != "none";
  }
  if (const ojson* k = field(body, "chat_template_kwargs")) {
    if (!k->is_object())
      fail("'chat_template_kwargs' must be an object", "chat_template_kwargs", "invalid_type");
    for (const auto& [key, v] : k->items())
      if (key != "enable_thinking")
        fail("chat_template_kwargs." + key + " is not supported (enable_thinking)",
             "chat_template_kwargs." + key, "unsupported_parameter");
    parse_bool(*k, "enable_thinking", "chat_template_kwargs.enable_thinking", &r.agent.thinking);
  }
  parse_bool(body, "think", "think", &r.agent.thinking);
  parse_budget(body, r.agent);
  check_agent_request(r);
  return r;
}

ChatRequest parse_ollama_chat(const ojson& body) {
  if (!body.is_object()) fail("the body must be a JSON object", "", "invalid_type");
  ChatRequest r;
  r.messages = parse_messages(body, true);
  r.agent.tools = parse_tools(body);
  // g4's extensions (Ollama has no tool_choice): as in the OpenAI API.
  parse_tool_choice(body, r.agent);
  parse_bool(body, "parallel_tool_calls", "parallel_tool_calls", &r.agent.parallel_tool_calls);
  if (const ojson* t = field(body, "think")) {
    if (t->is_boolean())
      r.agent.thinking = t->get<bool>();
    else if (*t == "low" || *t == "medium" || *t == "high")
      r.agent.thinking = true;
    else
      fail("'think' must be true, false, \"low\", \"medium\" or \"high\"", "think", "invalid_type");
  }
  parse_budget(body, r.agent);
  check_agent_request(r);
  return r;
}

}  // namespace g4
