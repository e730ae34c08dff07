// Gemma 3 tokenizer: llama.cpp's SentencePiece-style BPE over the GGUF vocabulary
// (tokenizer.ggml.model = "llama"). ref: formats.md §5.2–5.4, gemma-architecture.md §4.1.
// Immutable after construction; safe to share between threads.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/status.h"

namespace g4 {

class GgufFile;

enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

class Tokenizer {
 public:
  static Result<Tokenizer> from_gguf(const GgufFile& f);
  // Build from explicit tables (tests, toy vocabularies).
  static Result<Tokenizer> from_vocab(std::vector<std::string> tokens, std::vector<float> scores,
                                      std::vector<TokenType> types, int bos, int eos, bool add_bos,
                                      bool add_space_prefix);

  // Text -> ids. add_bos prepends <bos> when the vocabulary asks for it; parse_special lets
  // CONTROL tokens written in the text (e.g. "<start_of_turn>") become their ids. User
  // content should be tokenized with parse_special = false.
  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const;

  // One token's bytes as a streaming decoder emits them (BYTE tokens yield one raw byte,
  // CONTROL tokens nothing unless render_special).
  std::string piece(int32_t id, bool render_special = false) const;
  std::string decode(const std::vector<int32_t>& ids, bool render_special = false) const;

  int size() const { return int(tokens_.size()); }
  int bos() const { return bos_; }
  int eos() const { return eos_; }
  bool add_bos() const { return add_bos_; }
  // Id of an exact token text, or -1.
  int32_t find(std::string_view text) const;
  TokenType type(int32_t id) const { return types_[size_t(id)]; }
  const std::string& text(int32_t id) const { return tokens_[size_t(id)]; }
  // Ids that end generation (<eos>, <end_of_turn> when present).
  const std::vector<int32_t>& end_of_generation() const { return eog_; }
  bool is_eog(int32_t id) const;

 private:
  Status init();
  void encode_fragment(std::string_view text, std::vector<int32_t>& out) const;
  void push_bytes(std::string_view bytes, std::vector<int32_t>& out) const;

  std::vector<std::string> tokens_;
  std::vector<float> scores_;
  std::vector<TokenType> types_;
  std::unordered_map<std::string_view, int32_t> index_;
  std::vector<int32_t> byte_ids_;  // 256 entries, -1 if absent
  std::vector<int32_t> specials_;  // CONTROL/USER_DEFINED/UNKNOWN, longest first
  std::vector<int32_t> eog_;
  int bos_ = 2, eos_ = 1;
  bool add_bos_ = true;
  bool add_space_prefix_ = false;
};

// Holds back incomplete UTF-8 so streamed output never splits a character across writes.
class Utf8Stream {
 public:
  // Appends bytes and returns the longest complete-UTF-8 prefix of what is pending.
  std::string push(std::string_view bytes);
  std::string flush();  // whatever is left (possibly invalid) at end of stream

 private:
  std::string pending_;
};

}  // namespace g4
