// Transcription of chat-template-31B-it.jinja; macro names match the template's.
#include "tokenizer/chat_gemma4.h"

#include "tokenizer/chat_template.h"

#include <algorithm>

namespace g4 {

namespace {

using json = nlohmann::ordered_json;
const char kQ[] = "<|\"|>";  // the string delimiter token

// Output split into template markup (specials allowed) and content (never special).
struct Out {
  std::string text;
  std::vector<std::pair<size_t, bool>> marks;  // (start offset, special)
  void put(std::string_view s, bool special) {
    if (s.empty()) return;
    if (marks.empty() || marks.back().second != special) marks.push_back({text.size(), special});
    text.append(s);
  }
  void tpl(std::string_view s) { put(s, true); }
  void content(std::string_view s) { put(s, false); }
};

struct RenderError {
  std::string msg;
};

// Python's str.isspace() set, for str.strip() (Jinja's trim).
bool py_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

// Code point starting at s[i] and its length (invalid bytes: themselves, length 1).
std::pair<uint32_t, size_t> cp_at(std::string_view s, size_t i) {
  const uint8_t c = uint8_t(s[i]);
  if (c < 0x80) return {c, 1};
  const size_t n = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
  if (n == 1 || i + n > s.size()) return {0xFFFFFFFF, 1};
  uint32_t v = c & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) v = (v << 6) | (uint8_t(s[i + k]) & 0x3F);
  return {v, n};
}

std::string py_strip(std::string_view s) {
  size_t b = s.size(), e = 0;  // first and one-past-last non-space byte
  for (size_t i = 0; i < s.size();) {
    auto [c, n] = cp_at(s, i);
    if (!py_space(c)) {
      b = std::min(b, i);
      e = i + n;
    }
    i += n;
  }
  return b < e ? std::string(s.substr(b, e - b)) : std::string();
}

std::string ascii_upper(std::string s) {
  for (char& c : s)
    if (c >= 'a' && c <= 'z') c = char(c - 'a' + 'A');
  return s;
}
std::string ascii_lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return s;
}

// Jinja's value['key'] on a mapping: nullptr when undefined.
const json* jget(const json& v, const char* key) {
  if (!v.is_object()) return nullptr;
  auto it = v.find(key);
  return it == v.end() ? nullptr : &*it;
}

bool truthy(const json* v) {
  if (!v || v->is_null()) return false;
  if (v->is_boolean()) return v->get<bool>();
  if (v->is_number()) return v->get<double>() != 0.0;
  if (v->is_string()) return !v->get_ref<const std::string&>().empty();
  return !v->empty();
}

// {{ value }}: Python str() of a scalar; undefined prints nothing.
std::string py_str(const json* v) {
  if (!v) return {};
  if (v->is_string()) return v->get<std::string>();
  if (v->is_null()) return "None";
  if (v->is_boolean()) return v->get<bool>() ? "True" : "False";
  if (v->is_number()) return v->dump();
  throw RenderError{"cannot print a list or mapping here: " + v->dump()};
}

std::string upper_of(const json* v) {
  return ascii_upper(py_str(v));
}

// dictsort: items by key, case-insensitively, stable for equal keys.
std::vector<std::pair<std::string, const json*>> dictsort(const json& m) {
  if (!m.is_object()) throw RenderError{"expected a mapping, got " + m.dump()};
  std::vector<std::pair<std::string, const json*>> items;
  for (auto it = m.begin(); it != m.end(); ++it) items.push_back({it.key(), &it.value()});
  std::stable_sort(items.begin(), items.end(), [](const auto& a, const auto& b) {
    return ascii_lower(a.first) < ascii_lower(b.first);
  });
  return items;
}

void format_argument(const json& a, bool escape_keys, Out& o) {
  if (a.is_string()) {
    o.tpl(kQ);
    o.content(a.get<std::string>());
    o.tpl(kQ);
  } else if (a.is_boolean()) {
    o.tpl(a.get<bool>() ? "true" : "false");
  } else if (a.is_object()) {
    o.tpl("{");
    bool first = true;
    for (const auto& [k, v] : dictsort(a)) {
      if (!first) o.tpl(",");
      first = false;
      if (escape_keys) o.tpl(kQ);
      o.content(k);
      if (escape_keys) o.tpl(kQ);
      o.tpl(":");
      format_argument(*v, escape_keys, o);
    }
    o.tpl("}");
  } else if (a.is_array()) {
    o.tpl("[");
    for (size_t i = 0; i < a.size(); ++i) {
      if (i) o.tpl(",");
      format_argument(a[i], escape_keys, o);
    }
    o.tpl("]");
  } else {
    o.content(py_str(&a));
  }
}

void quoted_list(const json* items, Out& o) {  // [<|"|>a<|"|>,<|"|>b<|"|>]
  o.tpl("[");
  if (items && items->is_array()) {
    for (size_t i = 0; i < items->size(); ++i) {
      if (i) o.tpl(",");
      o.tpl(kQ);
      o.content(py_str(&(*items)[i]));
      o.tpl(kQ);
    }
  } else if (items && !items->is_null()) {
    throw RenderError{"'required' must be a list"};
  }
  o.tpl("]");
}

void format_parameters(const json& properties, Out& o) {
  static const char* const kStandard[] = {"description", "type", "properties", "required",
                                          "nullable"};
  bool found_first = false;
  for (const auto& [key, vp] : dictsort(properties)) {
    const json& value = *vp;
    if (std::find(std::begin(kStandard), std::end(kStandard), key) != std::end(kStandard)) continue;
    if (found_first) o.tpl(",");
    found_first = true;
    o.content(key);
    o.tpl(":{");
    bool add_comma = false;
    auto comma = [&] {
      if (add_comma)
        o.tpl(",");
      else
        add_comma = true;
    };
    if (truthy(jget(value, "description"))) {
      o.tpl("description:");
      o.tpl(kQ);
      o.content(py_str(jget(value, "description")));
      o.tpl(kQ);
      add_comma = true;
    }
    const std::string type = upper_of(jget(value, "type"));
    if (type == "STRING") {
      if (truthy(jget(value, "enum"))) {
        comma();
        o.tpl("enum:");
        format_argument(*jget(value, "enum"), true, o);
      }
    } else if (type == "ARRAY") {
      const json* items = jget(value, "items");
      if (items && items->is_object() && !items->empty()) {
        comma();
        o.tpl("items:{");
        bool first = true;
        for (const auto& [ik, iv] : dictsort(*items)) {
          if (iv->is_null()) continue;
          if (!first) o.tpl(",");
          first = false;
          if (ik == "properties") {
            o.tpl("properties:{");
            if (iv->is_object()) format_parameters(*iv, o);
            o.tpl("}");
          } else if (ik == "required") {
            o.tpl("required:");
            quoted_list(iv, o);
          } else if (ik == "type") {
            o.tpl("type:");
            if (iv->is_string()) {
              format_argument(json(ascii_upper(iv->get<std::string>())), true, o);
            } else if (iv->is_array()) {
              json up = json::array();
              for (const auto& t : *iv) up.push_back(upper_of(&t));
              format_argument(up, true, o);
            } else {
              throw RenderError{"items type must be a string or a list"};
            }
          } else {
            o.content(ik);
            o.tpl(":");
            format_argument(*iv, true, o);
          }
        }
        o.tpl("}");
      }
    }
    if (truthy(jget(value, "nullable"))) {
      comma();
      o.tpl("nullable:true");
    }
    if (type == "OBJECT") {
      const json* props = jget(value, "properties");
      if (props && props->is_object()) {
        comma();
        o.tpl("properties:{");
        format_parameters(*props, o);
        o.tpl("}");
      } else if (value.is_object()) {
        comma();
        o.tpl("properties:{");
        format_parameters(value, o);
        o.tpl("}");
      }
      if (truthy(jget(value, "required"))) {
        comma();
        o.tpl("required:");
        quoted_list(jget(value, "required"), o);
      }
    }
    comma();
    o.tpl("type:");
    o.tpl(kQ);
    o.content(type);
    o.tpl(kQ);
    o.tpl("}");
  }
}

void format_function_declaration(const json& tool, Out& o) {
  const json* fn = jget(tool, "function");
  if (!fn || !fn->is_object()) throw RenderError{"a tool has no 'function' object"};
  o.tpl("declaration:");
  o.content(py_str(jget(*fn, "name")));
  o.tpl("{description:");
  o.tpl(kQ);
  o.content(py_str(jget(*fn, "description")));
  o.tpl(kQ);
  const json* params = jget(*fn, "parameters");
  if (truthy(params)) {
    o.tpl(",parameters:{");
    if (truthy(jget(*params, "properties"))) {
      o.tpl("properties:{");
      format_parameters(*jget(*params, "properties"), o);
      o.tpl("},");
    }
    if (truthy(jget(*params, "required"))) {
      o.tpl("required:");
      quoted_list(jget(*params, "required"), o);
      o.tpl(",");
    }
    if (truthy(jget(*params, "type"))) {
      o.tpl("type:");
      o.tpl(kQ);
      o.content(upper_of(jget(*params, "type")));
      o.tpl(kQ);
      o.tpl("}");
    }
  }
  if (const json* resp = jget(*fn, "response")) {
    o.tpl(",response:{");
    if (truthy(jget(*resp, "description"))) {
      o.tpl("description:");
      o.tpl(kQ);
      o.content(py_str(jget(*resp, "description")));
      o.tpl(kQ);
      o.tpl(",");
    }
    if (upper_of(jget(*resp, "type")) == "OBJECT") {
      o.tpl("type:");
      o.tpl(kQ);
      o.content("OBJECT");
      o.tpl(kQ);
      o.tpl("}");
    }
  }
  o.tpl("}");
}

std::string strip_thinking(const std::string& text) {
  std::string result;
  size_t pos = 0;
  for (;;) {  // text.split('<channel|>'): keep what precedes '<|channel>' in each part
    const size_t end = text.find("<channel|>", pos);
    const std::string part = text.substr(pos, end == std::string::npos ? end : end - pos);
    const size_t open = part.find("<|channel>");
    result += open == std::string::npos ? part : part.substr(0, open);
    if (end == std::string::npos) break;
    pos = end + 10;
  }
  return py_strip(result);
}

void format_tool_response_block(const json& name, const json* response, Out& o) {
  if (!name.is_string()) throw RenderError{"tool response without a tool name"};
  o.tpl("<|tool_response>response:");
  o.content(name.get<std::string>());
  if (response && response->is_object()) {
    o.tpl("{");
    bool first = true;
    for (const auto& [k, v] : dictsort(*response)) {
      if (!first) o.tpl(",");
      first = false;
      o.content(k);
      o.tpl(":");
      format_argument(*v, false, o);
    }
    o.tpl("}");
  } else {
    o.tpl("{value:");
    if (response) format_argument(*response, false, o);
    o.tpl("}");
  }
  o.tpl("<tool_response|>");
}

enum class Prev { kNone, kThink, kTool, kToolCall, kToolResponse, kMedia };

const std::string& role_of(const json& m) {
  const json* r = jget(m, "role");
  if (!r || !r->is_string()) throw RenderError{"a message has no 'role' string"};
  return r->get_ref<const std::string&>();
}

void render(const json& messages, const json& tools, const Gemma4ChatOptions& opt, Out& o) {
  if (!messages.is_array() || messages.empty()) throw RenderError{"no messages"};
  if (!tools.is_null() && !tools.is_array()) throw RenderError{"tools must be a list"};
  Prev prev = Prev::kNone;
  o.tpl("<bos>");
  size_t first = 0;
  const std::string& role0 = role_of(messages[0]);
  const bool has_tools = truthy(&tools);
  if (opt.enable_thinking || has_tools || role0 == "system" || role0 == "developer") {
    o.tpl("<|turn>system\n");
    if (opt.enable_thinking) {
      o.tpl("<|think|>\n");
      prev = Prev::kThink;
    }
    if (role0 == "system" || role0 == "developer") {
      const json* c = jget(messages[0], "content");
      if (!c || !c->is_string()) throw RenderError{"the system message content must be a string"};
      o.content(py_strip(c->get<std::string>()));
      first = 1;
    }
    if (has_tools) {
      for (const json& t : tools) {
        o.tpl("<|tool>");
        format_function_declaration(t, o);
        o.tpl("<tool|>");
      }
      prev = Prev::kTool;
    }
    o.tpl("<turn|>\n");
  }
  const size_t n = messages.size() - first;
  auto msg = [&](size_t i) -> const json& { return messages[first + i]; };
  long last_user = -1;
  for (size_t i = 0; i < n; ++i)
    if (role_of(msg(i)) == "user") last_user = long(i);

  for (size_t i = 0; i < n; ++i) {
    const json& m = msg(i);
    const std::string& raw_role = role_of(m);
    if (raw_role == "tool") continue;
    prev = Prev::kNone;
    const std::string role = raw_role == "assistant" ? "model" : raw_role;
    std::string prev_nt;
    for (size_t j = i; j-- > 0;) {
      if (role_of(msg(j)) != "tool") {
        prev_nt = role_of(msg(j));
        break;
      }
    }
    if (!(role == "model" && prev_nt == "assistant")) {
      o.tpl("<|turn>");
      o.tpl(role);
      o.tpl("\n");
    }
    const json* tool_calls = jget(m, "tool_calls");
    const json* thinking =
        truthy(jget(m, "reasoning")) ? jget(m, "reasoning") : jget(m, "reasoning_content");
    if (truthy(thinking) && long(i) > last_user && truthy(tool_calls)) {
      o.tpl("<|channel>thought\n");
      o.content(py_str(thinking));
      o.tpl("\n<channel|>");
    }
    if (truthy(tool_calls)) {
      if (!tool_calls->is_array()) throw RenderError{"tool_calls must be a list"};
      for (const json& tc : *tool_calls) {
        const json* fn = jget(tc, "function");
        if (!fn) throw RenderError{"a tool call has no 'function'"};
        o.tpl("<|tool_call>call:");
        o.content(py_str(jget(*fn, "name")));
        o.tpl("{");
        const json* args = jget(*fn, "arguments");
        if (args && args->is_object()) {
          bool first_arg = true;
          for (const auto& [k, v] : dictsort(*args)) {
            if (!first_arg) o.tpl(",");
            first_arg = false;
            o.content(k);
            o.tpl(":");
            format_argument(*v, false, o);
          }
        } else if (args && args->is_string()) {
          o.content(args->get<std::string>());
        }
        o.tpl("}<tool_call|>");
      }
      prev = Prev::kToolCall;
    }
    bool tr_out = false;
    if (truthy(jget(m, "tool_responses"))) {
      for (const json& tr : *jget(m, "tool_responses")) {
        const json* name = jget(tr, "name");
        format_tool_response_block(name ? *name : json("unknown"), jget(tr, "response"), o);
        tr_out = true;
        prev = Prev::kToolResponse;
      }
    } else if (truthy(tool_calls)) {
      for (size_t k = i + 1; k < n && role_of(msg(k)) == "tool"; ++k) {
        const json& follow = msg(k);
        json name = jget(follow, "name") ? *jget(follow, "name") : json(nullptr);
        const json* fid = jget(follow, "tool_call_id");
        for (const json& tc : *tool_calls) {
          const json* tid = jget(tc, "id");
          if ((tid ? *tid : json(nullptr)) == (fid ? *fid : json(nullptr))) {
            const json* fn = jget(tc, "function");
            const json* fname = fn ? jget(*fn, "name") : nullptr;
            if (!fname) throw RenderError{"a tool call has no function name"};
            name = *fname;
          }
        }
        const json* body = jget(follow, "content");
        if (body && body->is_array()) {
          std::string s;
          for (const json& part : *body) {
            const json* type = jget(part, "type");
            if (type && *type == "text") {
              const json* t = jget(part, "text");
              if (t && !t->is_string()) throw RenderError{"tool content text must be a string"};
              if (t) s += t->get<std::string>();
            }
          }
          const json js(s);
          format_tool_response_block(name, &js, o);
        } else if (body && body->is_object()) {
          throw RenderError{"tool message content must be a string or a list of parts"};
        } else {
          const json null_body(nullptr);
          format_tool_response_block(name, body ? body : &null_body, o);
        }
        tr_out = true;
        prev = Prev::kToolResponse;
      }
    }
    const json* content = jget(m, "content");
    if (content && content->is_string()) {
      const std::string& c = content->get_ref<const std::string&>();
      o.content(role == "model" ? strip_thinking(c) : py_strip(c));
    } else if (content && content->is_array()) {
      for (const json& item : *content) {
        const std::string type = py_str(jget(item, "type"));
        if (type == "text") {
          const json* t = jget(item, "text");
          if (!t || !t->is_string()) throw RenderError{"a text part has no 'text' string"};
          o.content(role == "model" ? strip_thinking(t->get<std::string>())
                                    : py_strip(t->get<std::string>()));
        } else if (type == "image" || type == "audio" || type == "video") {
          o.tpl("<|" + type + "|>");
          prev = Prev::kMedia;
        }
      }
    }
    if (prev == Prev::kToolCall && !tr_out)
      o.tpl("<|tool_response>");
    else if (!(tr_out && !truthy(content)))
      o.tpl("<turn|>\n");
  }
  if (opt.add_generation_prompt && prev != Prev::kToolResponse && prev != Prev::kToolCall) {
    o.tpl("<|turn>model\n");
    if (!opt.enable_thinking) o.tpl("<|channel>thought\n<channel|>");
  }
}

Result<Out> render_out(const json& messages, const json& tools, const Gemma4ChatOptions& opt) {
  Out o;
  try {
    render(messages, tools, opt, o);
  } catch (const RenderError& e) {
    return Status::error("gemma4 chat template: " + e.msg);
  } catch (const nlohmann::json::exception& e) {
    return Status::error(std::string("gemma4 chat template: ") + e.what());
  }
  return o;
}

}  // namespace

Result<std::string> render_gemma4(const json& messages, const json& tools,
                                  const Gemma4ChatOptions& opt) {
  auto r = render_out(messages, tools, opt);
  if (!r.ok()) return r.status();
  return std::move(r.value().text);
}

Result<std::vector<int32_t>> encode_gemma4_chat(const Tokenizer& tok, const json& messages,
                                                const json& tools, const Gemma4ChatOptions& opt) {
  auto r = render_out(messages, tools, opt);
  if (!r.ok()) return r.status();
  const Out& o = r.value();
  std::vector<Tokenizer::Segment> segs;
  for (size_t i = 0; i < o.marks.size(); ++i) {
    const size_t b = o.marks[i].first;
    const size_t e = i + 1 < o.marks.size() ? o.marks[i + 1].first : o.text.size();
    segs.push_back({std::string_view(o.text).substr(b, e - b), o.marks[i].second});
  }
  return tok.encode_segments(segs, false);
}

ChatFormat chat_format_for_arch(std::string_view architecture) {
  return architecture == "gemma4" ? ChatFormat::kGemma4 : ChatFormat::kGemma3;
}

static json to_json(const std::vector<ChatMessage>& msgs) {
  json j = json::array();
  for (const ChatMessage& m : msgs) j.push_back({{"role", m.role}, {"content", m.content}});
  return j;
}

Result<std::vector<int32_t>> encode_chat(ChatFormat fmt, const Tokenizer& tok,
                                         const std::vector<ChatMessage>& msgs,
                                         bool add_generation_prompt, bool enable_thinking) {
  if (fmt == ChatFormat::kGemma3) return encode_gemma3_chat(tok, msgs, add_generation_prompt);
  return encode_gemma4_chat(
      tok, to_json(msgs), nullptr,
      {.add_generation_prompt = add_generation_prompt, .enable_thinking = enable_thinking});
}

Result<std::string> render_chat(ChatFormat fmt, const std::vector<ChatMessage>& msgs,
                                bool add_generation_prompt, bool enable_thinking) {
  if (fmt == ChatFormat::kGemma3) return render_gemma3(msgs, add_generation_prompt);
  return render_gemma4(
      to_json(msgs), nullptr,
      {.add_generation_prompt = add_generation_prompt, .enable_thinking = enable_thinking});
}

}  // namespace g4
