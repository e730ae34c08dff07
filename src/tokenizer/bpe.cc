// Gemma 4 tokenizer: merges-ranked BPE on raw UTF-8 (no GPT-2 byte mapping), spaces written as
// U+2581, text pre-split into runs of '\n' and runs of other characters, byte fallback to
// <0xXX> tokens. Loaded from a GGUF (tokenizer.ggml.model = "gemma4", as llama.cpp's converter
// writes it) or from a Hugging Face tokenizer.json (BPE model with byte_fallback, the
// Replace(' ' -> '▁') normalizer).
// ref: formats.md §5.1, §5.2, §5.5; gemma-architecture.md §4.2.
//
// The two sources differ only where their reference implementations differ (BpeOptions):
//  - special-token matching: llama.cpp partitions by candidate, longest text first, on the raw
//    text (formats.md §5.2); HF's AddedVocabulary matches leftmost-longest, first the
//    non-normalized added tokens on the raw text, then the normalized ones on the text after
//    the normalizer;
//  - llama.cpp emits an all-'\n' chunk that is itself a token as that token (PR #21343); HF
//    does the same for any chunk only when ignore_merges is set.
// Merges are looked up by text in both (llama.cpp semantics: a merged text need not be a token;
// it then falls back to bytes). For a tokenizer.json that `tokenizers` accepts every merge
// result is a token, so this is the same as HF's id-based merging.
#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <queue>

#include "io/gguf.h"
#include "tokenizer/tokenizer.h"

namespace g4 {

namespace {

const char kSpace[] = "\xE2\x96\x81";  // U+2581 '▁'

inline size_t utf8_len(uint8_t c) {
  static const uint8_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return lookup[c >> 4];
}

std::string merge_key(std::string_view l, std::string_view r) {
  std::string k;
  k.reserve(4 + l.size() + r.size());
  const uint32_t n = uint32_t(l.size());
  k.append(reinterpret_cast<const char*>(&n), 4);
  k.append(l);
  k.append(r);
  return k;
}

// Invalid UTF-8 becomes U+FFFD, one per bad byte, as llama.cpp's unicode_cpts_from_utf8 does
// (lead-byte length, continuation bytes checked, truncated sequences invalid).
std::string repair_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const uint8_t c = uint8_t(s[i]);
    size_t n = 0;
    if (c < 0x80)
      n = 1;
    else if ((c & 0xE0) == 0xC0)
      n = 2;
    else if ((c & 0xF0) == 0xE0)
      n = 3;
    else if ((c & 0xF8) == 0xF0)
      n = 4;
    bool ok = n > 0 && i + n <= s.size();
    for (size_t k = 1; ok && k < n; ++k) ok = (uint8_t(s[i + k]) & 0xC0) == 0x80;
    if (ok) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      i += 1;
    }
  }
  return out;
}

std::string replace_spaces(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  for (char ch : s) {
    if (ch == ' ')
      out += kSpace;
    else
      out += ch;
  }
  return out;
}

const char* const kGemma4UserDefined[] = {"<|channel>",   "<channel|>",       "<|tool_call>",
                                          "<tool_call|>", "<|tool_response>", "<tool_response|>",
                                          "<|\"|>"};

}  // namespace

Result<Tokenizer> Tokenizer::from_bpe_vocab(std::vector<std::string> tokens,
                                            std::vector<TokenType> types,
                                            const std::vector<std::string>& merges, int bos,
                                            int eos, BpeOptions opt) {
  Tokenizer tk;
  tk.algo_ = TokenizerAlgo::kGemma4Bpe;
  tk.scores_.assign(tokens.size(), 0.0f);
  tk.tokens_ = std::move(tokens);
  tk.types_ = std::move(types);
  if (tk.tokens_.empty()) return Status::error("tokenizer has no tokens");
  if (bos < 0 || size_t(bos) >= tk.tokens_.size() || eos < 0 || size_t(eos) >= tk.tokens_.size())
    return Status::error("bos/eos token id out of range");
  tk.bos_ = bos;
  tk.eos_ = eos;
  tk.add_bos_ = true;  // forced for Gemma 4 (llama.cpp PR #21500), see gemma-architecture §4.2
  tk.add_space_prefix_ = false;
  tk.bpe_ = opt;
  tk.added_normalized_.assign(tk.tokens_.size(), false);
  Status st = tk.init();
  if (!st.ok()) return st;
  st = tk.init_bpe(merges);
  if (!st.ok()) return st;
  return tk;
}

Status Tokenizer::init_bpe(const std::vector<std::string>& merges) {
  merge_rank_.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const std::string& m = merges[i];
    const size_t sp = m.size() > 1 ? m.find(' ', 1) : std::string::npos;
    if (sp == std::string::npos || sp + 1 >= m.size())
      return Status::error("merge " + std::to_string(i) + " is not 'LEFT RIGHT'");
    merge_rank_.emplace(
        merge_key(std::string_view(m).substr(0, sp), std::string_view(m).substr(sp + 1)),
        int32_t(i));  // first occurrence wins
  }
  return Status();
}

// One pre-split chunk (already space-escaped): rank-ordered merges over UTF-8 characters.
void Tokenizer::bpe_encode_chunk(std::string_view chunk, std::vector<int32_t>& out) const {
  if (chunk.empty()) return;
  const bool all_newlines = chunk.find_first_not_of('\n') == std::string_view::npos;
  if (bpe_.ignore_merges || (bpe_.whole_newline_run && all_newlines)) {
    const int32_t id = find(chunk);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  struct Sym {
    int prev, next;
    size_t start, len;
  };
  std::vector<Sym> sym;
  for (size_t off = 0; off < chunk.size();) {
    const size_t len = std::min(utf8_len(uint8_t(chunk[off])), chunk.size() - off);
    sym.push_back({int(sym.size()) - 1, int(sym.size()) + 1, off, len});
    off += len;
  }
  sym.back().next = -1;
  struct Pair {
    int32_t rank;
    int left, right;
    size_t size;
  };
  auto cmp = [](const Pair& a, const Pair& b) {  // min-heap on (rank, left)
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  };
  std::priority_queue<Pair, std::vector<Pair>, decltype(cmp)> q(cmp);
  auto try_add = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    const Sym& L = sym[size_t(l)];
    const Sym& R = sym[size_t(r)];
    auto it =
        merge_rank_.find(merge_key(chunk.substr(L.start, L.len), chunk.substr(R.start, R.len)));
    if (it == merge_rank_.end()) return;
    q.push({it->second, l, r, L.len + R.len});
  };
  for (size_t i = 1; i < sym.size(); ++i) try_add(int(i) - 1, int(i));
  while (!q.empty()) {
    const Pair p = q.top();
    q.pop();
    Sym& L = sym[size_t(p.left)];
    Sym& R = sym[size_t(p.right)];
    if (L.len == 0 || R.len == 0 || L.next != p.right || L.len + R.len != p.size) continue;
    L.len += R.len;
    R.len = 0;
    L.next = R.next;
    if (R.next >= 0) sym[size_t(R.next)].prev = p.left;
    try_add(L.prev, p.left);
    try_add(p.left, L.next);
  }
  for (int i = 0; i >= 0; i = sym[size_t(i)].next) {
    const std::string_view s = chunk.substr(sym[size_t(i)].start, sym[size_t(i)].len);
    const int32_t id = find(s);
    if (id >= 0) {
      out.push_back(id);
      continue;
    }
    for (unsigned char b : s) {
      const int32_t bid = byte_ids_[b];
      if (bid >= 0) out.push_back(bid);
    }
  }
}

// Splits the raw fragments around special-token texts. phase 0: llama.cpp order (every
// candidate, longest first, each scanning the remaining raw text). HF: phase 1 = added tokens
// matched on the raw text, phase 2 = those matched on normalized text; leftmost-longest.
void Tokenizer::split_specials(std::vector<Frag>& frags, bool parse_special, int phase) const {
  std::vector<int32_t> cands;
  for (int32_t sid : specials_) {
    if (!parse_special && types_[size_t(sid)] != TokenType::kUserDefined) continue;
    if (phase == 1 && added_normalized_[size_t(sid)]) continue;
    if (phase == 2 && !added_normalized_[size_t(sid)]) continue;
    cands.push_back(sid);
  }
  if (cands.empty()) return;
  std::vector<Frag> next;
  if (phase == 0) {
    for (int32_t sid : cands) {
      const std::string& st = tokens_[size_t(sid)];
      next.clear();
      for (Frag& f : frags) {
        if (f.id >= 0 || f.text.size() < st.size()) {
          next.push_back(std::move(f));
          continue;
        }
        size_t pos = 0;
        for (;;) {
          const size_t hit = f.text.find(st, pos);
          if (hit == std::string::npos) break;
          if (hit > pos) next.push_back({-1, f.text.substr(pos, hit - pos)});
          next.push_back({sid, st});
          pos = hit + st.size();
        }
        if (pos < f.text.size()) next.push_back({-1, f.text.substr(pos)});
      }
      frags.swap(next);
    }
    return;
  }
  // Candidates by first byte, longest first within each bucket.
  std::vector<std::vector<int32_t>> by_first(256);
  for (int32_t sid : cands) by_first[uint8_t(tokens_[size_t(sid)][0])].push_back(sid);
  for (Frag& f : frags) {
    if (f.id >= 0) {
      next.push_back(std::move(f));
      continue;
    }
    size_t start = 0;
    for (size_t i = 0; i < f.text.size();) {
      int32_t best = -1;
      for (int32_t sid : by_first[uint8_t(f.text[i])]) {  // the first hit is the longest
        const std::string& st = tokens_[size_t(sid)];
        if (f.text.compare(i, st.size(), st) == 0) {
          best = sid;
          break;
        }
      }
      if (best < 0) {
        ++i;
        continue;
      }
      if (i > start) next.push_back({-1, f.text.substr(start, i - start)});
      next.push_back({best, tokens_[size_t(best)]});
      i += tokens_[size_t(best)].size();
      start = i;
    }
    if (start < f.text.size()) next.push_back({-1, f.text.substr(start)});
  }
  frags.swap(next);
}

void Tokenizer::bpe_encode_frags(std::vector<Frag> frags, std::vector<int32_t>& out) const {
  for (Frag& f : frags) {
    if (f.id >= 0) {
      out.push_back(f.id);
      continue;
    }
    // f.text is already escaped and repaired. Pre-split: [^\n]+|[\n]+
    std::string_view t = f.text;
    if (!bpe_.newline_split) {
      bpe_encode_chunk(t, out);
      continue;
    }
    for (size_t i = 0; i < t.size();) {
      const bool nl = t[i] == '\n';
      size_t j = i + 1;
      while (j < t.size() && (t[j] == '\n') == nl) ++j;
      bpe_encode_chunk(t.substr(i, j - i), out);
      i = j;
    }
  }
}

std::vector<int32_t> Tokenizer::encode_segments(const std::vector<Segment>& segs,
                                                bool add_bos) const {
  std::vector<int32_t> out;
  if (add_bos && add_bos_) out.push_back(int32_t(bos_));
  if (algo_ != TokenizerAlgo::kGemma4Bpe) {
    // SPM: encode each piece on its own (Gemma 3 chats are built that way, chat_template.cc).
    for (const Segment& s : segs) {
      auto v = encode(s.text, false, s.special);
      out.insert(out.end(), v.begin(), v.end());
    }
    return out;
  }
  std::vector<Frag> all;
  bool all_special = true;
  for (const Segment& s : segs) {
    all_special = all_special && s.special;
    std::vector<Frag> frags{{-1, std::string(s.text)}};
    if (bpe_.hf_added_tokens) {
      split_specials(frags, s.special, 1);
    } else {
      split_specials(frags, s.special, 0);
    }
    for (Frag& f : frags) {
      if (f.id < 0 && !all.empty() && all.back().id < 0)
        all.back().text += f.text;  // raw text continues across the piece boundary
      else
        all.push_back(std::move(f));
    }
  }
  // Normalize raw text (invalid UTF-8 -> U+FFFD, ' ' -> '▁'), then HF's normalized added
  // tokens. Segments of a chat are valid UTF-8, so repairing after joining changes nothing.
  for (Frag& f : all)
    if (f.id < 0) f.text = replace_spaces(repair_utf8(f.text));
  // HF phase 2 runs on joined text: special (CONTROL) normalized tokens are allowed only if
  // every piece allows specials. Gemma's normalized added tokens are user-defined anyway.
  if (bpe_.hf_added_tokens) split_specials(all, all_special, 2);
  bpe_encode_frags(std::move(all), out);
  return out;
}

Result<Tokenizer> tokenizer_gemma4_from_gguf(const GgufFile& f);

Result<Tokenizer> tokenizer_gemma4_from_gguf(const GgufFile& f) {
  const GgufValue* toks = f.find("tokenizer.ggml.tokens");
  const GgufValue* types = f.find("tokenizer.ggml.token_type");
  const GgufValue* merges = f.find("tokenizer.ggml.merges");
  if (!toks || toks->type != GgufType::kArray || toks->elem_type != GgufType::kString)
    return Status::error("tokenizer.ggml.tokens missing or not an array of strings");
  const size_t n = size_t(toks->count);
  if (n == 0) return Status::error("tokenizer.ggml.tokens is empty");
  if (!types || types->type != GgufType::kArray || types->elem_type != GgufType::kI32 ||
      types->count < n) {
    return Status::error(
        "tokenizer.ggml.token_type missing, not i32[], or shorter than the token list");
  }
  if (!merges || merges->type != GgufType::kArray || merges->elem_type != GgufType::kString)
    return Status::error("tokenizer.ggml.merges missing or not an array of strings (gemma4)");
  std::vector<std::string> t(n);
  std::vector<TokenType> ty(n);
  for (size_t i = 0; i < n; ++i) {
    t[i] = std::string(toks->strings[i]);
    int32_t v;
    std::memcpy(&v, types->elems + 4 * i, 4);
    if (v < 0 || v > 6)
      return Status::error("token " + std::to_string(i) + " has invalid type " + std::to_string(v));
    ty[i] = TokenType(v);
  }
  std::vector<std::string> m(merges->strings.begin(), merges->strings.end());
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
  BpeOptions opt;
  opt.newline_split = true;
  opt.whole_newline_run = true;
  return Tokenizer::from_bpe_vocab(std::move(t), std::move(ty), m, bos.value(), eos.value(), opt);
}

Result<Tokenizer> Tokenizer::from_hf_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::error("cannot read '" + path + "'");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto r = from_hf_json(text);
  if (!r.ok()) return Status::error(path + ": " + r.error());
  return r;
}

namespace {

using json = nlohmann::json;

bool is_space_replace(const json& n) {
  return n.is_object() && n.value("type", "") == "Replace" && n.contains("pattern") &&
         n["pattern"].is_object() && n["pattern"].contains("String") &&
         n["pattern"]["String"] == " " && n.value("content", "") == kSpace;
}

// Newline pre-split as a Split pre-tokenizer: a regex matching newline runs, Isolated.
bool is_newline_split(const json& p) {
  if (!p.is_object() || p.value("type", "") != "Split") return false;
  if (!p.contains("pattern") || !p["pattern"].is_object() || !p["pattern"].contains("Regex"))
    return false;
  const json& re = p["pattern"]["Regex"];
  if (!re.is_string()) return false;
  const std::string r = re;
  const bool runs = r == "\n+" || r == "\\n+" || r == "[\n]+" || r == "[\\n]+";
  return runs && p.value("behavior", "") == "Isolated" && !p.value("invert", false);
}

// Split(' ', ...) after a normalizer that turned every space into '▁': matches nothing.
bool is_vestigial_space_split(const json& p) {
  return p.is_object() && p.value("type", "") == "Split" && p.contains("pattern") &&
         p["pattern"].is_object() && p["pattern"].contains("String") &&
         p["pattern"]["String"] == " " && !p.value("invert", false);
}

}  // namespace

Result<Tokenizer> Tokenizer::from_hf_json(std::string_view json_text) {
  const json j = json::parse(json_text.begin(), json_text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Status::error("tokenizer.json is not valid JSON");
  try {
    if (!j.contains("model") || !j["model"].is_object())
      return Status::error("tokenizer.json has no model object");
    const json& model = j["model"];
    if (model.value("type", "") != "BPE")
      return Status::error("tokenizer.json model type '" + model.value("type", "?") +
                           "' is not supported (supported: BPE, Gemma 4 style)");
    for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      if (model.contains(k) && !model[k].is_null() && model[k] != "")
        return Status::error(std::string("tokenizer.json BPE ") + k + " is not supported");
    }
    if (model.contains("dropout") && !model["dropout"].is_null() && model["dropout"] != 0)
      return Status::error("tokenizer.json BPE dropout is not supported");
    // Normalizer: none, or Replace(' ' -> '▁') (alone or as the only member of a Sequence).
    bool escape_spaces = false;
    if (j.contains("normalizer") && !j["normalizer"].is_null()) {
      json n = j["normalizer"];
      if (n.value("type", "") == "Sequence" && n.contains("normalizers") &&
          n["normalizers"].is_array() && n["normalizers"].size() == 1)
        n = n["normalizers"][0];
      if (!is_space_replace(n))
        return Status::error(
            "tokenizer.json normalizer is not supported (expected Replace ' ' -> U+2581)");
      escape_spaces = true;
    }
    if (!escape_spaces)
      return Status::error("tokenizer.json has no Replace ' ' -> U+2581 normalizer (not Gemma 4)");
    BpeOptions opt;
    opt.hf_added_tokens = true;
    opt.newline_split = false;
    opt.ignore_merges = model.value("ignore_merges", false);
    if (j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null()) {
      const json& p = j["pre_tokenizer"];
      std::vector<json> parts;
      if (p.value("type", "") == "Sequence" && p.contains("pretokenizers") &&
          p["pretokenizers"].is_array())
        parts.assign(p["pretokenizers"].begin(), p["pretokenizers"].end());
      else
        parts.push_back(p);
      for (const json& q : parts) {
        if (is_newline_split(q))
          opt.newline_split = true;
        else if (!is_vestigial_space_split(q))
          return Status::error("tokenizer.json pre_tokenizer '" + q.value("type", "?") +
                               "' is not supported (expected a newline Split or none)");
      }
    }
    // Vocabulary: model.vocab {text: id} plus added_tokens [{id, content, special, ...}].
    if (!model.contains("vocab") || !model["vocab"].is_object())
      return Status::error("tokenizer.json model.vocab missing");
    std::vector<std::string> tokens;
    std::vector<bool> have;
    auto put = [&](int64_t id, const std::string& text) -> Status {
      if (id < 0 || id > (int64_t(1) << 24))
        return Status::error("tokenizer.json token id " + std::to_string(id) + " out of range");
      if (size_t(id) >= tokens.size()) {
        tokens.resize(size_t(id) + 1);
        have.resize(size_t(id) + 1, false);
      }
      if (have[size_t(id)] && tokens[size_t(id)] != text)
        return Status::error("tokenizer.json id " + std::to_string(id) + " has two texts");
      tokens[size_t(id)] = text;
      have[size_t(id)] = true;
      return Status();
    };
    for (const auto& [text, id] : model["vocab"].items()) {
      if (!id.is_number_integer()) return Status::error("tokenizer.json vocab id not an integer");
      Status st = put(id.get<int64_t>(), text);
      if (!st.ok()) return st;
    }
    struct Added {
      int64_t id;
      bool special, normalized;
    };
    std::vector<Added> added;
    if (j.contains("added_tokens")) {
      if (!j["added_tokens"].is_array())
        return Status::error("tokenizer.json added_tokens is not an array");
      for (const json& a : j["added_tokens"]) {
        if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() ||
            !a.contains("content") || !a["content"].is_string())
          return Status::error("tokenizer.json added_tokens entry without id/content");
        for (const char* k : {"lstrip", "rstrip", "single_word"}) {
          if (a.value(k, false))
            return Status::error(std::string("tokenizer.json added token option ") + k +
                                 " is not supported");
        }
        const bool special = a.value("special", false);
        Status st = put(a["id"].get<int64_t>(), a["content"].get<std::string>());
        if (!st.ok()) return st;
        added.push_back({a["id"].get<int64_t>(), special, a.value("normalized", !special)});
      }
    }
    for (size_t i = 0; i < have.size(); ++i) {
      if (!have[i])
        return Status::error("tokenizer.json has no token with id " + std::to_string(i));
    }
    if (tokens.empty()) return Status::error("tokenizer.json vocabulary is empty");
    // Types as llama.cpp's Gemma 4 converter assigns them (formats.md §5.1).
    std::vector<TokenType> types(tokens.size(), TokenType::kNormal);
    for (size_t i = 0; i < tokens.size(); ++i) {
      const std::string& s = tokens[i];
      if (s.size() == 6 && s.compare(0, 3, "<0x") == 0 && s[5] == '>' &&
          std::isxdigit(uint8_t(s[3])) && std::isxdigit(uint8_t(s[4])) &&
          !std::islower(uint8_t(s[3])) && !std::islower(uint8_t(s[4])))
        types[i] = TokenType::kByte;
    }
    std::vector<bool> normalized(tokens.size(), false);
    for (const Added& a : added) {
      types[size_t(a.id)] = a.special ? TokenType::kControl : TokenType::kUserDefined;
      normalized[size_t(a.id)] = a.normalized;
    }
    for (const char* ud : kGemma4UserDefined) {
      for (const Added& a : added)
        if (tokens[size_t(a.id)] == ud) types[size_t(a.id)] = TokenType::kUserDefined;
    }
    std::vector<std::string> merges;
    if (!model.contains("merges") || !model["merges"].is_array())
      return Status::error("tokenizer.json model.merges missing");
    merges.reserve(model["merges"].size());
    for (const json& m : model["merges"]) {
      if (m.is_string()) {
        merges.push_back(m.get<std::string>());
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        const std::string l = m[0], r = m[1];
        if (l.empty() || r.empty()) return Status::error("tokenizer.json has an empty merge half");
        merges.push_back(l + " " + r);
      } else {
        return Status::error("tokenizer.json merge entry is neither 'A B' nor [A, B]");
      }
    }
    auto id_of = [&](const char* text) -> int {
      for (size_t i = 0; i < tokens.size(); ++i)
        if (tokens[i] == text) return int(i);
      return -1;
    };
    const int bos = id_of("<bos>"), eos = id_of("<eos>");
    if (bos < 0 || eos < 0) return Status::error("tokenizer.json has no <bos>/<eos> token");
    if (!model.value("byte_fallback", false))
      return Status::error("tokenizer.json BPE without byte_fallback is not supported");
    auto r = from_bpe_vocab(std::move(tokens), std::move(types), merges, bos, eos, opt);
    if (!r.ok()) return r.status();
    Tokenizer out = std::move(r).value();
    out.added_normalized_ = std::move(normalized);
    return out;
  } catch (const nlohmann::json::exception& e) {
    return Status::error(std::string("tokenizer.json: ") + e.what());
  }
}

}  // namespace g4
