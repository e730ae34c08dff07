#include "tokenizer/chat_template.h"

namespace g4 {

namespace {

std::string trim(const std::string& s) {
  const char* ws = " \t\n\r\f\v";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return {};
  const size_t e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

struct Turn {
  std::string role;  // user | model
  std::string text;
};

Result<std::vector<Turn>> to_turns(const std::vector<ChatMessage>& msgs) {
  std::vector<Turn> turns;
  std::string system;
  size_t first = 0;
  if (!msgs.empty() && msgs[0].role == "system") {
    system = msgs[0].content + "\n\n";  // the official template does not trim the system text
    first = 1;
  }
  for (size_t i = first; i < msgs.size(); ++i) {
    const std::string& r = msgs[i].role;
    std::string role;
    if (r == "user")
      role = "user";
    else if (r == "assistant" || r == "model")
      role = "model";
    else if (r == "system")
      return Status::error("a system message is only allowed first");
    else
      return Status::error("unknown role '" + r + "' (expected system, user or assistant)");
    const std::string expect = (turns.size() % 2 == 0) ? "user" : "model";
    if (role != expect) {
      return Status::error("conversation roles must alternate user/assistant/user/... (message " +
                           std::to_string(i) + " is '" + r + "')");
    }
    std::string text = trim(msgs[i].content);
    if (turns.empty()) text = system + text;
    turns.push_back({role, text});
  }
  if (turns.empty()) return Status::error("no user message");
  return turns;
}

}  // namespace

Result<std::string> render_gemma3(const std::vector<ChatMessage>& msgs,
                                  bool add_generation_prompt) {
  auto turns = to_turns(msgs);
  if (!turns.ok()) return turns.status();
  std::string out = "<bos>";
  for (const Turn& t : turns.value()) {
    out += "<start_of_turn>" + t.role + "\n" + t.text + "<end_of_turn>\n";
  }
  if (add_generation_prompt) out += "<start_of_turn>model\n";
  return out;
}

Result<std::vector<int32_t>> encode_gemma3_chat(const Tokenizer& tok,
                                                const std::vector<ChatMessage>& msgs,
                                                bool add_generation_prompt) {
  auto turns = to_turns(msgs);
  if (!turns.ok()) return turns.status();
  const int32_t sot = tok.find("<start_of_turn>"), eot = tok.find("<end_of_turn>");
  if (sot < 0 || eot < 0) return Status::error("vocabulary has no <start_of_turn>/<end_of_turn>");
  std::vector<int32_t> ids{int32_t(tok.bos())};
  auto add = [&](const std::string& text) {
    auto v = tok.encode(text, false, false);
    ids.insert(ids.end(), v.begin(), v.end());
  };
  for (const Turn& t : turns.value()) {
    ids.push_back(sot);
    add(t.role + "\n" + t.text);
    ids.push_back(eot);
    add("\n");
  }
  if (add_generation_prompt) {
    ids.push_back(sot);
    add("model\n");
  }
  return ids;
}

}  // namespace g4
