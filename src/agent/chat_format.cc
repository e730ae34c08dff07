#include "agent/chat_format.h"

#include <algorithm>
#include <set>

#include "constrain/schema_check.h"
#include "tokenizer/chat_gemma4.h"
#include "tokenizer/tokenizer.h"

namespace g4 {

namespace {

constexpr std::string_view kQuote = "<|\"|>";  // Gemma 4's string delimiter token
constexpr std::string_view kChannelOpen = "<|channel>";
constexpr std::string_view kChannelClose = "<channel|>";
constexpr std::string_view kCallOpen = "<|tool_call>";
constexpr std::string_view kCallClose = "<tool_call|>";
constexpr std::string_view kThoughtLabel = "thought\n";
// Gemma 3 (JSON convention): how a call starts, as the constraint writes it.
constexpr std::string_view kG3CallStart = "{\"name\": \"";

// ---------------------------------------------------------------- Gemma 3 prompt

// JSON as Python's json.dumps writes it (", " and ": "), the spelling of the call lines.
std::string py_dumps(const ojson& v) {
  if (v.is_object()) {
    std::string s = "{";
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (it != v.begin()) s += ", ";
      s += ojson(it.key()).dump() + ": " + py_dumps(it.value());
    }
    return s + "}";
  }
  if (v.is_array()) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + py_dumps(v[i]);
    return s + "]";
  }
  return v.dump(-1, ' ', false, ojson::error_handler_t::replace);
}

std::string gemma3_tool_text(const std::vector<ToolDef>& tools) {
  std::string s =
      "You can call functions. To call one, answer with only a JSON object on a line of its "
      "own:\n{\"name\": <function name>, \"parameters\": <object of argument values>}\n"
      "Write one such line per call and nothing else. The results come back in ```tool_output "
      "blocks.\n\nFunctions:";
  for (const ToolDef& t : tools) {
    ojson d = {{"name", t.name}};
    if (!t.description.empty()) d["description"] = t.description;
    d["parameters"] = t.parameters;
    s += "\n" + py_dumps(d);
  }
  return s;
}

std::string gemma3_call_line(const ojson& call) {
  return py_dumps(
      {{"name", call["function"]["name"]}, {"parameters", call["function"]["arguments"]}});
}

Result<std::vector<ChatMessage>> gemma3_messages(const ChatRequest& r) {
  std::vector<ChatMessage> out;
  const ojson& ms = r.messages;
  size_t first = 0;
  std::string system;
  if (!ms.empty() && ms[0]["role"] == "system") {
    system = ms[0]["content"].get<std::string>();
    first = 1;
  }
  if (r.agent.calls_possible()) {
    const std::string tools = gemma3_tool_text(r.agent.tools);
    system = system.empty() ? tools : system + "\n\n" + tools;
  }
  if (!system.empty()) out.push_back({"system", system});
  bool last_is_result = false;  // the last user turn holds tool results
  for (size_t i = first; i < ms.size(); ++i) {
    const ojson& m = ms[i];
    const std::string role = m["role"];
    std::string text = m["content"].get<std::string>();
    if (role == "assistant") {
      if (m.contains("tool_calls"))
        for (const ojson& c : m["tool_calls"])
          text += (text.empty() ? "" : "\n") + gemma3_call_line(c);
      out.push_back({"assistant", text});
      last_is_result = false;
    } else if (role == "tool" || (role == "user" && last_is_result)) {
      if (role == "tool") text = "```tool_output\n" + text + "\n```";
      if (last_is_result)
        out.back().content += "\n" + text;
      else
        out.push_back({"user", text});
      last_is_result = true;
    } else {
      out.push_back({role, text});  // a later system message: the template refuses it
      last_is_result = false;
    }
  }
  return out;
}

ojson gemma4_tools(const AgentOptions& a) {
  if (!a.calls_possible()) return nullptr;
  ojson t = ojson::array();
  for (const ToolDef& d : a.tools) {
    ojson fn = {{"name", d.name}, {"description", d.description}, {"parameters", d.parameters}};
    t.push_back({{"type", "function"}, {"function", fn}});
  }
  return t;
}

}  // namespace

Result<std::vector<int32_t>> encode_agent_chat(ChatFormat fmt, const Tokenizer& tok,
                                               const ChatRequest& r) {
  if (fmt == ChatFormat::kGemma4)
    return encode_gemma4_chat(tok, r.messages, gemma4_tools(r.agent),
                              {.add_generation_prompt = true, .enable_thinking = r.agent.thinking});
  if (r.agent.thinking) return Status::error("this model (Gemma 3) has no thinking mode");
  auto msgs = gemma3_messages(r);
  if (!msgs.ok()) return msgs.status();
  return encode_gemma3_chat(tok, msgs.value(), true);
}

Result<std::string> render_agent_chat(ChatFormat fmt, const ChatRequest& r) {
  if (fmt == ChatFormat::kGemma4)
    return render_gemma4(r.messages, gemma4_tools(r.agent),
                         {.add_generation_prompt = true, .enable_thinking = r.agent.thinking});
  if (r.agent.thinking) return Status::error("this model (Gemma 3) has no thinking mode");
  auto msgs = gemma3_messages(r);
  if (!msgs.ok()) return msgs.status();
  return render_gemma3(msgs.value(), true);
}

// ---------------------------------------------------------------- constraint

Result<std::optional<ConstraintSpec>> agent_constraint(
    ChatFormat fmt, const AgentOptions& a, const std::optional<ConstraintSpec>& response) {
  if (!a.calls_possible()) return response;
  const bool g4 = fmt == ChatFormat::kGemma4;
  ojson tags = ojson::array();
  for (size_t i = 0; i < a.tools.size(); ++i) {
    const ToolDef& t = a.tools[i];
    if (a.tool_choice == ToolChoice::kNamed && t.name != a.tool_name) continue;
    auto prepared = prepare_json_schema(t.parameters.dump());
    if (!prepared.ok())
      return Status::error("tools[" + std::to_string(i) +
                           "].function.parameters: " + prepared.error());
    ojson content = {{"type", "json_schema"},
                     {"json_schema", ojson::parse(prepared.value())},
                     {"style", g4 ? "gemma" : "json"},
                     {"max_whitespace_cnt", 1}};
    if (g4)
      tags.push_back({{"type", "tag"},
                      {"begin", std::string(kCallOpen) + "call:" + t.name},
                      {"content", content},
                      {"end", std::string(kCallClose)}});
    else
      tags.push_back({{"type", "tag"},
                      {"begin", "{\"name\": \"" + t.name + "\", \"parameters\": "},
                      {"content", content},
                      {"end", "}"}});
  }
  const bool one = !a.parallel_tool_calls;
  const ojson calls = {{"type", "tags_with_separator"},
                       {"tags", tags},
                       {"separator", g4 ? "" : "\n"},
                       {"at_least_one", true},
                       {"stop_after_first", one}};
  ojson format;
  if (a.tool_choice == ToolChoice::kRequired || a.tool_choice == ToolChoice::kNamed) {
    format = calls;
  } else if (response) {
    // Calls, or the answer in the requested JSON.
    ojson schema;
    if (response->kind == ConstraintSpec::Kind::kJsonObject) {
      schema = {{"type", "object"}};
    } else if (response->kind == ConstraintSpec::Kind::kJsonSchema) {
      auto prepared = prepare_json_schema(response->text);
      if (!prepared.ok()) return prepared.status();
      schema = ojson::parse(prepared.value());
    } else {
      return Status::error(std::string("tools cannot be combined with a ") +
                           constraint_kind_name(response->kind) +
                           " constraint (json_object and json_schema can)");
    }
    format = {
        {"type", "or"},
        {"elements",
         {calls, {{"type", "json_schema"}, {"json_schema", schema}, {"max_whitespace_cnt", 1}}}}};
  } else {
    format = {{"type", "triggered_tags"},
              {"triggers", {g4 ? std::string(kCallOpen) : std::string(kG3CallStart)}},
              {"tags", tags},
              {"excludes", ojson::array()},
              {"at_least_one", false},
              {"stop_after_first", one}};
  }
  ConstraintSpec s;
  s.kind = ConstraintSpec::Kind::kStructuralTag;
  s.text = ojson{{"type", "structural_tag"}, {"format", format}}.dump();
  return std::optional<ConstraintSpec>(std::move(s));
}

// ---------------------------------------------------------------- Gemma 4 arguments

namespace {

struct DictParser {
  std::string_view s;
  size_t i = 0;
  int depth = 0;
  std::string err;

  bool fail(const std::string& m) {
    if (err.empty()) err = m + " at offset " + std::to_string(i);
    return false;
  }
  void ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r')) ++i;
  }
  bool starts(std::string_view p) const { return s.substr(i, p.size()) == p; }

  bool quoted(std::string* out) {
    i += kQuote.size();
    const size_t e = s.find(kQuote, i);
    if (e == std::string_view::npos) return fail("unterminated string");
    out->assign(s.substr(i, e - i));
    i = e + kQuote.size();
    return true;
  }
  bool key(std::string* out) {
    ws();
    if (starts(kQuote)) return quoted(out);
    if (i < s.size() && s[i] == '"') {  // a JSON-quoted key
      const size_t b = i;
      for (++i; i < s.size() && s[i] != '"'; ++i)
        if (s[i] == '\\') ++i;
      if (i >= s.size()) return fail("unterminated key");
      ++i;
      ojson k = ojson::parse(s.substr(b, i - b), nullptr, false);
      if (!k.is_string()) return fail("bad key");
      *out = k.get<std::string>();
      return true;
    }
    const size_t b = i;
    while (i < s.size() && s[i] != ':' && s[i] != ',' && s[i] != '}' && s[i] != '{') ++i;
    std::string_view k = s.substr(b, i - b);
    while (!k.empty() &&
           (k.back() == ' ' || k.back() == '\n' || k.back() == '\t' || k.back() == '\r'))
      k.remove_suffix(1);
    if (k.empty()) return fail("empty key");
    out->assign(k);
    return true;
  }
  bool value(ojson* out) {
    ws();
    if (i >= s.size()) return fail("missing value");
    if (starts(kQuote)) {
      std::string v;
      if (!quoted(&v)) return false;
      *out = std::move(v);
      return true;
    }
    if (++depth > 128) return fail("nested too deeply");
    struct Leave {
      int& d;
      ~Leave() { --d; }
    } leave{depth};
    const char c = s[i];
    if (c == '{') {
      *out = ojson::object();
      ++i;
      ws();
      if (i < s.size() && s[i] == '}') return ++i, true;
      for (;;) {
        std::string k;
        if (!key(&k)) return false;
        ws();
        if (i >= s.size() || s[i] != ':') return fail("expected ':'");
        ++i;
        ojson v;
        if (!value(&v)) return false;
        (*out)[k] = std::move(v);
        ws();
        if (i < s.size() && s[i] == ',') {
          ++i;
          continue;
        }
        if (i < s.size() && s[i] == '}') return ++i, true;
        return fail("expected ',' or '}'");
      }
    }
    if (c == '[') {
      *out = ojson::array();
      ++i;
      ws();
      if (i < s.size() && s[i] == ']') return ++i, true;
      for (;;) {
        ojson v;
        if (!value(&v)) return false;
        out->push_back(std::move(v));
        ws();
        if (i < s.size() && s[i] == ',') {
          ++i;
          continue;
        }
        if (i < s.size() && s[i] == ']') return ++i, true;
        return fail("expected ',' or ']'");
      }
    }
    // The official template writes a nested null as Python's None (and True/False likewise).
    for (auto [word, v] : {std::pair<std::string_view, ojson>{"true", true},
                           {"false", false},
                           {"null", nullptr},
                           {"None", nullptr},
                           {"True", true},
                           {"False", false}}) {
      if (starts(word)) {
        i += word.size();
        *out = v;
        return true;
      }
    }
    const size_t b = i;
    while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '-' ||
                            s[i] == '+' || s[i] == '.' || s[i] == 'e' || s[i] == 'E'))
      ++i;
    if (b == i) return fail("unexpected character");
    ojson n = ojson::parse(s.substr(b, i - b), nullptr, false);
    if (!n.is_number()) return fail("bad number");
    *out = std::move(n);
    return true;
  }
};

}  // namespace

Result<ojson> parse_gemma4_arguments(std::string_view text) {
  DictParser p{text, 0, 0, {}};
  p.ws();
  if (p.i >= text.size() || text[p.i] != '{') return Status::error("arguments must start with '{'");
  ojson v;
  if (!p.value(&v)) return Status::error("gemma4 arguments: " + p.err);
  p.ws();
  if (p.i != text.size()) return Status::error("gemma4 arguments: text after the closing '}'");
  return v;
}

// ---------------------------------------------------------------- output parsers

namespace {

// Bytes of `buf` that can be released: all but a tail that may be the start of a marker.
size_t safe_prefix(std::string_view buf, std::initializer_list<std::string_view> markers) {
  size_t keep = 0;
  for (std::string_view m : markers)
    for (size_t k = std::min(m.size() - 1, buf.size()); k > keep; --k)
      if (buf.substr(buf.size() - k) == m.substr(0, k)) {
        keep = k;
        break;
      }
  return buf.size() - keep;
}

// The earliest of the markers in buf: (position, marker index), or npos.
std::pair<size_t, size_t> earliest(std::string_view buf,
                                   std::initializer_list<std::string_view> markers) {
  size_t best = std::string_view::npos, which = 0, k = 0;
  for (std::string_view m : markers) {
    const size_t p = buf.find(m);
    if (p < best) best = p, which = k;
    ++k;
  }
  return {best, which};
}

class ParserBase : public OutputParser {
 public:
  ParserBase(const AgentOptions& a, std::string id_prefix) : prefix_(std::move(id_prefix)) {
    for (const auto& t : a.tools) names_.insert(t.name);
  }

 protected:
  // Answer text; trailing whitespace waits (it is dropped when a call follows or ends it).
  void content(std::string_view s) {
    const size_t e = s.find_last_not_of(" \t\r\n");
    if (e == std::string_view::npos) {
      ws_.append(s);
      return;
    }
    if (any_content_ || n_calls_ == 0) out_.content += ws_;  // none before text after calls
    any_content_ = true;
    ws_.clear();
    out_.content.append(s.substr(0, e + 1));
    ws_.assign(s.substr(e + 1));
  }
  bool call(std::string name, ojson args) {
    if (!names_.count(name) || !args.is_object()) return false;
    ws_.clear();
    out_.calls.push_back({prefix_ + std::to_string(n_calls_++), std::move(name), std::move(args)});
    return true;
  }
  OutputDelta take(bool final) {
    if (final && n_calls_ == 0) out_.content += ws_;
    if (final) ws_.clear();
    return std::exchange(out_, {});
  }

  OutputDelta push(std::string_view text) final {
    buf_.append(text);
    run(false);
    return take(false);
  }
  OutputDelta finish() final {
    run(true);
    rest();
    buf_.clear();
    return take(true);
  }
  // Consumes what is decided in buf_ (all of it when final, except an unfinished call).
  virtual void run(bool final) = 0;
  // The end of the output: what run() left in buf_.
  virtual void rest() = 0;

  OutputDelta out_;
  std::string buf_;  // text not yet decided

 private:
  std::string prefix_;
  std::set<std::string> names_;
  std::string ws_;
  int n_calls_ = 0;
  bool any_content_ = false;
};

class Gemma4Parser final : public ParserBase {
 public:
  using ParserBase::ParserBase;

 private:
  enum State { kText, kThought, kCall };
  void emit(std::string_view s, State where) {
    if (where == kThought)
      out_.reasoning.append(s);
    else
      content(s);
  }
  void rest() override {
    if (st_ == kCall)
      emit(std::string(kCallOpen) + buf_, after_);
    else
      emit(buf_, st_);
  }
  void run(bool final) override {
    for (;;) {
      if (st_ == kText) {
        auto [p, m] = earliest(buf_, {kChannelOpen, kChannelClose, kCallOpen});
        if (p == std::string::npos) {
          const size_t n = final ? 0 : safe_prefix(buf_, {kChannelOpen, kChannelClose, kCallOpen});
          if (!final) {
            content(std::string_view(buf_).substr(0, n));
            buf_.erase(0, n);
          }
          return;
        }
        content(std::string_view(buf_).substr(0, p));
        static constexpr std::string_view kMarkers[] = {kChannelOpen, kChannelClose, kCallOpen};
        buf_.erase(0, p + kMarkers[m].size());
        if (m == 0) st_ = kThought, label_ = true;  // a stray <channel|> (m == 1) is dropped
        if (m == 2) st_ = kCall, after_ = kText;
      } else if (st_ == kThought) {
        if (label_) {
          if (buf_.size() < kThoughtLabel.size() && !final &&
              kThoughtLabel.substr(0, buf_.size()) == buf_)
            return;
          if (buf_.rfind(kThoughtLabel, 0) == 0) buf_.erase(0, kThoughtLabel.size());
          label_ = false;
        }
        auto [p, m] = earliest(buf_, {kChannelClose, kCallOpen, kChannelOpen});
        if (p == std::string::npos) {
          if (!final) {
            const size_t n = safe_prefix(buf_, {kChannelClose, kCallOpen, kChannelOpen});
            out_.reasoning.append(buf_, 0, n);
            buf_.erase(0, n);
          }
          return;
        }
        out_.reasoning.append(buf_, 0, p);
        static constexpr std::string_view kMarkers[] = {kChannelClose, kCallOpen, kChannelOpen};
        buf_.erase(0, p + kMarkers[m].size());
        if (m == 0) st_ = kText;
        if (m == 1) st_ = kCall, after_ = kThought;  // a call written inside the thought
        if (m == 2) label_ = true;                   // a second channel opened: one thought
      } else {
        const size_t p = buf_.find(kCallClose);
        if (p == std::string::npos) return;  // wait for the whole call
        const std::string body = buf_.substr(0, p);
        buf_.erase(0, p + kCallClose.size());
        if (!parse_call(body))
          emit(std::string(kCallOpen) + body + std::string(kCallClose), after_);
        st_ = after_;
      }
    }
  }
  bool parse_call(const std::string& body) {
    if (body.rfind("call:", 0) != 0) return false;
    const size_t b = body.find('{');
    if (b == std::string::npos) return false;
    auto args = parse_gemma4_arguments(std::string_view(body).substr(b));
    return args.ok() && call(body.substr(5, b - 5), std::move(args).value());
  }

  State st_ = kText, after_ = kText;
  bool label_ = false;  // "thought\n" may open the channel
};

// End of the JSON object starting at buf[0] ('{'), or npos while it is open.
size_t json_object_end(std::string_view buf) {
  int depth = 0;
  bool str = false, esc = false;
  for (size_t i = 0; i < buf.size(); ++i) {
    const char c = buf[i];
    if (str) {
      if (esc)
        esc = false;
      else if (c == '\\')
        esc = true;
      else if (c == '"')
        str = false;
    } else if (c == '"') {
      str = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (--depth == 0) return i + 1;
    }
  }
  return std::string_view::npos;
}

class Gemma3Parser final : public ParserBase {
 public:
  using ParserBase::ParserBase;

 private:
  void rest() override { content(buf_); }
  void run(bool final) override {
    for (;;) {
      if (!in_call_) {
        const size_t p = buf_.find(kG3CallStart);
        if (p == std::string::npos) {
          if (!final) {
            const size_t n = safe_prefix(buf_, {kG3CallStart});
            content(std::string_view(buf_).substr(0, n));
            buf_.erase(0, n);
          }
          return;
        }
        content(std::string_view(buf_).substr(0, p));
        buf_.erase(0, p);
        in_call_ = true;
      }
      const size_t e = json_object_end(buf_);
      if (e == std::string::npos) return;
      const std::string obj = buf_.substr(0, e);
      buf_.erase(0, e);
      in_call_ = false;
      ojson v = ojson::parse(obj, nullptr, false);
      bool ok = v.is_object() && v.contains("name") && v["name"].is_string();
      if (ok) {
        const ojson* args = v.contains("parameters")  ? &v["parameters"]
                            : v.contains("arguments") ? &v["arguments"]
                                                      : nullptr;
        ok = args && v.size() == 2 && call(v["name"].get<std::string>(), *args);
      }
      if (!ok) content(obj);
    }
  }
  bool in_call_ = false;
};

}  // namespace

std::unique_ptr<OutputParser> make_output_parser(ChatFormat fmt, const AgentOptions& a,
                                                 std::string id_prefix) {
  if (fmt == ChatFormat::kGemma4) return std::make_unique<Gemma4Parser>(a, std::move(id_prefix));
  return std::make_unique<Gemma3Parser>(a, std::move(id_prefix));
}

}  // namespace g4
