#include <algorithm>
#include <cstring>
#include <queue>

#include "io/gguf.h"
#include "tokenizer/tokenizer.h"

namespace g4 {

namespace {

// UTF-8 sequence length from the lead byte only, as llama.cpp's unicode_len_utf8.
inline size_t utf8_len(uint8_t c) {
  static const uint8_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return lookup[c >> 4];
}

}  // namespace

Result<Tokenizer> tokenizer_gemma4_from_gguf(const GgufFile& f);  // bpe.cc

Result<Tokenizer> Tokenizer::from_gguf(const GgufFile& f) {
  auto model = f.get_string("tokenizer.ggml.model");
  if (!model.ok()) return model.status();
  if (!model.value())
    return Status::error("no tokenizer in the file (tokenizer.ggml.model missing)");
  if (*model.value() == "gemma4") return tokenizer_gemma4_from_gguf(f);
  if (*model.value() != "llama") {
    return Status::error("tokenizer model '" + *model.value() +
                         "' is not supported yet (supported: llama, gemma4)");
  }
  const GgufValue* toks = f.find("tokenizer.ggml.tokens");
  const GgufValue* scores = f.find("tokenizer.ggml.scores");
  const GgufValue* types = f.find("tokenizer.ggml.token_type");
  if (!toks || toks->type != GgufType::kArray || toks->elem_type != GgufType::kString) {
    return Status::error("tokenizer.ggml.tokens missing or not an array of strings");
  }
  const size_t n = size_t(toks->count);
  if (n == 0) return Status::error("tokenizer.ggml.tokens is empty");
  if (!scores || scores->type != GgufType::kArray || scores->elem_type != GgufType::kF32 ||
      scores->count < n) {
    return Status::error(
        "tokenizer.ggml.scores missing, not f32[], or shorter than the token list");
  }
  if (!types || types->type != GgufType::kArray || types->elem_type != GgufType::kI32 ||
      types->count < n) {
    return Status::error(
        "tokenizer.ggml.token_type missing, not i32[], or shorter than the token list");
  }
  std::vector<std::string> t(n);
  std::vector<float> s(n);
  std::vector<TokenType> ty(n);
  for (size_t i = 0; i < n; ++i) {
    t[i] = std::string(toks->strings[i]);
    std::memcpy(&s[i], scores->elems + 4 * i, 4);
    int32_t v;
    std::memcpy(&v, types->elems + 4 * i, 4);
    if (v < 0 || v > 6)
      return Status::error("token " + std::to_string(i) + " has invalid type " + std::to_string(v));
    ty[i] = TokenType(v);
  }
  auto get_id = [&](const char* key, int def) -> Result<int> {
    auto r = f.get_uint(key);
    if (!r.ok()) return r.status();
    const uint64_t v = r.value().value_or(uint64_t(def));
    if (v >= n)
      return Status::error(std::string(key) + " = " + std::to_string(v) + " is out of range");
    return int(v);
  };
  auto bos = get_id("tokenizer.ggml.bos_token_id", 2);
  if (!bos.ok()) return bos.status();
  auto eos = get_id("tokenizer.ggml.eos_token_id", 1);
  if (!eos.ok()) return eos.status();
  auto add_bos = f.get_bool("tokenizer.ggml.add_bos_token");
  if (!add_bos.ok()) return add_bos.status();
  auto asp = f.get_bool("tokenizer.ggml.add_space_prefix");
  if (!asp.ok()) return asp.status();
  return from_vocab(std::move(t), std::move(s), std::move(ty), bos.value(), eos.value(),
                    add_bos.value().value_or(true), asp.value().value_or(true));
}

Result<Tokenizer> Tokenizer::from_vocab(std::vector<std::string> tokens, std::vector<float> scores,
                                        std::vector<TokenType> types, int bos, int eos,
                                        bool add_bos, bool add_space_prefix) {
  Tokenizer tk;
  tk.tokens_ = std::move(tokens);
  tk.scores_ = std::move(scores);
  tk.types_ = std::move(types);
  tk.bos_ = bos;
  tk.eos_ = eos;
  tk.add_bos_ = add_bos;
  tk.add_space_prefix_ = add_space_prefix;
  Status st = tk.init();
  if (!st.ok()) return st;
  return tk;
}

Status Tokenizer::init() {
  if (scores_.size() != tokens_.size() || types_.size() != tokens_.size()) {
    return Status::error("tokenizer tables differ in length");
  }
  index_.reserve(tokens_.size());
  for (size_t i = 0; i < tokens_.size(); ++i) {
    if (!index_.emplace(std::string_view(tokens_[i]), int32_t(i)).second) {
      return Status::error("duplicate token text at id " + std::to_string(i));
    }
  }
  byte_ids_.assign(256, -1);
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    int32_t id = find(name);
    if (id < 0) id = find(std::string_view(reinterpret_cast<const char*>(&b), 1));
    byte_ids_[size_t(b)] = id;
  }
  // End-of-generation texts. llama.cpp forces these to CONTROL whatever the file says (it
  // warns "control-looking token ... will be overridden"); Gemma 3 files type "</s>" as
  // USER_DEFINED, which would otherwise be split out of plain user text.
  eog_.push_back(int32_t(eos_));
  if (algo_ == TokenizerAlgo::kGemma4Bpe) {
    // llama.cpp's Gemma 4 set, by text, types left as the file gives them (gemma-arch §4.2).
    for (const char* text : {"<turn|>", "<|tool_response>"}) {
      const int32_t id = find(text);
      if (id >= 0 && id != eos_) eog_.push_back(id);
    }
  }
  for (const char* text :
       {"<end_of_turn>", "</s>", "<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<EOT>"}) {
    if (algo_ == TokenizerAlgo::kGemma4Bpe) break;
    const int32_t id = find(text);
    if (id < 0) continue;
    types_[size_t(id)] = TokenType::kControl;
    if (id != eos_) eog_.push_back(id);
  }
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const TokenType t = types_[i];
    if ((t == TokenType::kControl || t == TokenType::kUserDefined || t == TokenType::kUnknown) &&
        !tokens_[i].empty()) {
      specials_.push_back(int32_t(i));
    }
  }
  std::stable_sort(specials_.begin(), specials_.end(), [&](int32_t a, int32_t b) {
    return tokens_[size_t(a)].size() > tokens_[size_t(b)].size();
  });
  return Status();
}

int32_t Tokenizer::find(std::string_view text) const {
  auto it = index_.find(text);
  return it == index_.end() ? -1 : it->second;
}

bool Tokenizer::is_eog(int32_t id) const {
  return std::find(eog_.begin(), eog_.end(), id) != eog_.end();
}

void Tokenizer::push_bytes(std::string_view bytes, std::vector<int32_t>& out) const {
  for (unsigned char b : bytes) {
    const int32_t id = byte_ids_[b];
    if (id >= 0) out.push_back(id);  // a vocabulary without the byte drops it (no throw)
  }
}

// SentencePiece-style BPE on one raw fragment (formats.md §5.3): symbols are UTF-8
// characters; repeatedly merge the adjacent pair whose concatenation is the highest-scoring
// vocabulary entry (ties: leftmost); unknown single characters fall back to byte tokens.
void Tokenizer::encode_fragment(std::string_view text, std::vector<int32_t>& out) const {
  std::string buf;
  buf.reserve(text.size() * 3);
  for (char ch : text) {
    if (ch == ' ')
      buf += "\xE2\x96\x81";
    else
      buf += ch;
  }
  struct Sym {
    int prev, next;
    size_t start, len;
  };
  std::vector<Sym> sym;
  for (size_t off = 0; off < buf.size();) {
    const size_t len = std::min(utf8_len(uint8_t(buf[off])), buf.size() - off);
    sym.push_back({int(sym.size()) - 1, int(sym.size()) + 1, off, len});
    off += len;
  }
  if (sym.empty()) return;
  sym.back().next = -1;
  struct Bigram {
    float score;
    int left, right;
    size_t size;
  };
  auto cmp = [](const Bigram& a, const Bigram& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  std::priority_queue<Bigram, std::vector<Bigram>, decltype(cmp)> q(cmp);
  auto try_add = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    const std::string_view s(buf.data() + sym[size_t(l)].start,
                             sym[size_t(l)].len + sym[size_t(r)].len);
    const int32_t id = find(s);
    if (id < 0) return;
    q.push({scores_[size_t(id)], l, r, s.size()});
  };
  for (size_t i = 1; i < sym.size(); ++i) try_add(int(i) - 1, int(i));
  while (!q.empty()) {
    const Bigram bg = q.top();
    q.pop();
    Sym& L = sym[size_t(bg.left)];
    Sym& R = sym[size_t(bg.right)];
    if (L.len == 0 || R.len == 0 || L.len + R.len != bg.size) continue;  // stale
    L.len += R.len;
    R.len = 0;
    L.next = R.next;
    if (R.next >= 0) sym[size_t(R.next)].prev = bg.left;
    try_add(L.prev, bg.left);
    try_add(bg.left, L.next);
  }
  for (int i = 0; i >= 0; i = sym[size_t(i)].next) {
    const std::string_view s(buf.data() + sym[size_t(i)].start, sym[size_t(i)].len);
    const int32_t id = find(s);
    if (id >= 0)
      out.push_back(id);
    else
      push_bytes(s, out);
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos,
                                       bool parse_special) const {
  if (algo_ == TokenizerAlgo::kGemma4Bpe) return encode_segments({{text, parse_special}}, add_bos);
  std::vector<int32_t> out;
  if (add_bos && add_bos_) out.push_back(int32_t(bos_));
  // Fragments: raw text (id -1) or a matched special token.
  struct Frag {
    int32_t id;
    size_t off, len;
  };
  std::vector<Frag> frags{{-1, 0, text.size()}};
  for (int32_t sid : specials_) {
    const TokenType t = types_[size_t(sid)];
    if (!parse_special && t != TokenType::kUserDefined) continue;
    const std::string& st = tokens_[size_t(sid)];
    std::vector<Frag> next;
    bool changed = false;
    for (const Frag& f : frags) {
      if (f.id >= 0 || f.len < st.size()) {
        next.push_back(f);
        continue;
      }
      const std::string_view raw = text.substr(f.off, f.len);
      size_t pos = 0;
      for (;;) {
        const size_t hit = raw.find(st, pos);
        if (hit == std::string_view::npos) break;
        changed = true;
        if (hit > pos) next.push_back({-1, f.off + pos, hit - pos});
        next.push_back({sid, f.off + hit, st.size()});
        pos = hit + st.size();
      }
      if (pos < raw.size()) next.push_back({-1, f.off + pos, raw.size() - pos});
    }
    if (changed) frags.swap(next);
  }
  bool prev_special = true;
  for (const Frag& f : frags) {
    if (f.id >= 0) {
      out.push_back(f.id);
      prev_special = true;
      continue;
    }
    if (add_space_prefix_ && prev_special) {
      std::string tmp = " ";
      tmp += text.substr(f.off, f.len);
      encode_fragment(tmp, out);
    } else {
      encode_fragment(text.substr(f.off, f.len), out);
    }
    prev_special = false;
  }
  return out;
}

std::string Tokenizer::piece(int32_t id, bool render_special) const {
  if (id < 0 || id >= size()) return {};
  const std::string& s = tokens_[size_t(id)];
  switch (types_[size_t(id)]) {
    case TokenType::kNormal: {
      std::string r;
      for (size_t i = 0; i < s.size();) {
        if (s.compare(i, 3, "\xE2\x96\x81") == 0) {
          r += ' ';
          i += 3;
        } else {
          r += s[i++];
        }
      }
      return r;
    }
    case TokenType::kByte: {
      if (s.size() == 6 && s.compare(0, 3, "<0x") == 0) {
        return std::string(1, char(std::stoi(s.substr(3, 2), nullptr, 16)));
      }
      return s;
    }
    case TokenType::kUserDefined:
      return s;
    case TokenType::kControl:
    case TokenType::kUnknown:
      return render_special ? s : std::string();
    default:
      return {};
  }
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool render_special) const {
  std::string out;
  for (int32_t id : ids) out += piece(id, render_special);
  return out;
}

std::string Utf8Stream::push(std::string_view bytes) {
  pending_.append(bytes);
  // Find the start of a trailing incomplete sequence, if any.
  size_t cut = pending_.size();
  for (size_t back = 1; back <= 4 && back <= pending_.size(); ++back) {
    const uint8_t c = uint8_t(pending_[pending_.size() - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    size_t need = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    if (need > back) cut = pending_.size() - back;
    break;
  }
  std::string out = pending_.substr(0, cut);
  pending_.erase(0, cut);
  return out;
}

std::string Utf8Stream::flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace g4
