#include "io/hf_tokenizer.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

#include "tokenizer/tokenizer.h"

namespace g4 {

namespace {

using json = nlohmann::json;
const char kSpace[] = "\xE2\x96\x81";  // U+2581

Result<std::string> slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::error(path + ": cannot read");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A special token in tokenizer_config.json: "<bos>" or {"content": "<bos>", ...}.
std::optional<std::string> token_text(const json& cfg, const char* key) {
  if (!cfg.is_object() || !cfg.contains(key)) return std::nullopt;
  const json& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return std::nullopt;
}

}  // namespace

Result<std::optional<HfVocab>> read_hf_vocab(const std::string& dir, const std::string& arch) {
  namespace fs = std::filesystem;
  const std::string path = dir + "/tokenizer.json";
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::optional<HfVocab>();
  auto text = slurp(path);
  if (!text.ok()) return text.status();
  auto tok = Tokenizer::from_hf_json(text.value());
  if (!tok.ok()) return Status::error(path + ": " + tok.error());
  const Tokenizer& t = tok.value();
  const json j = json::parse(text.value(), nullptr, false);  // valid: from_hf_json parsed it
  const json& model = j["model"];

  HfVocab v;
  v.model = arch == "gemma4" ? "gemma4" : "llama";
  const size_t n = size_t(t.size());
  v.tokens.reserve(n);
  v.types.reserve(n);
  std::unordered_map<std::string, int32_t> id_of;
  for (size_t i = 0; i < n; ++i) {
    v.tokens.push_back(t.text(int32_t(i)));
    v.types.push_back(int32_t(t.type(int32_t(i))));
    id_of.emplace(v.tokens.back(), int32_t(i));
  }
  // Merges as "LEFT RIGHT" strings, in rank order (from_hf_json accepted both JSON forms).
  std::vector<std::string> merges;
  for (const json& m : model["merges"]) {
    merges.push_back(m.is_string() ? m.get<std::string>()
                                   : m[0].get<std::string>() + " " + m[1].get<std::string>());
  }
  if (v.model == "gemma4") {
    v.scores.assign(n, -1000.0f);
    v.merges = std::move(merges);
  } else {
    // SentencePiece order: a learned piece's score is minus its position after the first
    // NORMAL piece, so merging by score follows the vocabulary order (real Gemma 3: exactly
    // llama.cpp's scores for every merged piece); bytes 0; added tokens -1000 and, when not
    // special, written with spaces for U+2581 (what llama.cpp's converter does with them).
    v.scores.assign(n, -1000.0f);
    int64_t first_normal = -1;
    for (size_t i = 0; i < n; ++i) {
      const auto ty = TokenType(v.types[i]);
      if (ty == TokenType::kByte) {
        v.scores[i] = 0.0f;
      } else if (ty == TokenType::kNormal) {
        if (first_normal < 0) first_normal = int64_t(i);
        v.scores[i] = -float(int64_t(i) - first_normal);
      } else if (ty == TokenType::kUserDefined) {
        std::string& tk = v.tokens[i];
        for (size_t at; (at = tk.find(kSpace)) != std::string::npos;) tk.replace(at, 3, " ");
      }
    }
  }

  json cfg = json::object();
  if (fs::exists(dir + "/tokenizer_config.json", ec)) {
    auto c = slurp(dir + "/tokenizer_config.json");
    if (!c.ok()) return c.status();
    cfg = json::parse(c.value(), nullptr, false);
    if (cfg.is_discarded() || !cfg.is_object())
      return Status::error(dir + "/tokenizer_config.json: not a JSON object");
  }
  auto special = [&](const char* key, const char* fallback, int64_t* out) -> Status {
    const std::optional<std::string> s = token_text(cfg, key);
    auto it = id_of.find(s ? *s : std::string(fallback));
    if (s && it == id_of.end())
      return Status::error(dir + "/tokenizer_config.json: " + key + " '" + *s +
                           "' is not in tokenizer.json");
    *out = it == id_of.end() ? -1 : it->second;
    return Status();
  };
  for (auto [k, fb, out] :
       {std::tuple{"bos_token", "<bos>", &v.bos}, std::tuple{"eos_token", "<eos>", &v.eos},
        std::tuple{"unk_token", "<unk>", &v.unk}, std::tuple{"pad_token", "<pad>", &v.pad}}) {
    if (Status s = special(k, fb, out); !s.ok()) return s;
  }
  if (v.bos < 0 || v.eos < 0) return Status::error(path + ": no <bos>/<eos> token");
  if (cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean() && v.model != "gemma4")
    v.add_bos = cfg["add_bos_token"].get<bool>();
  if (cfg.contains("add_eos_token") && cfg["add_eos_token"].is_boolean())
    v.add_eos = cfg["add_eos_token"].get<bool>();
  auto ct = read_hf_chat_template(dir);
  if (!ct.ok()) return ct.status();
  v.chat_template = std::move(ct.value());
  return std::optional<HfVocab>(std::move(v));
}

Result<std::string> read_hf_chat_template(const std::string& dir) {
  std::error_code ec;
  if (std::filesystem::exists(dir + "/tokenizer_config.json", ec)) {
    auto c = slurp(dir + "/tokenizer_config.json");
    if (!c.ok()) return c.status();
    const json cfg = json::parse(c.value(), nullptr, false);
    if (cfg.is_object() && cfg.contains("chat_template") && cfg["chat_template"].is_string())
      return cfg["chat_template"].get<std::string>();
  }
  if (std::filesystem::exists(dir + "/chat_template.jinja", ec))
    return slurp(dir + "/chat_template.jinja");
  return std::string();
}

}  // namespace g4
