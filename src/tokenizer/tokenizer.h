// Gemma tokenizers behind one interface (encode/decode/piece/specials/end of generation):
//  - Gemma 3: llama.cpp's SentencePiece-style BPE over the GGUF vocabulary
//    (tokenizer.ggml.model = "llama"). ref: formats.md §5.2–5.4, gemma-architecture.md §4.1.
//  - Gemma 4: merges-ranked BPE on raw UTF-8 with spaces as U+2581 and newline-run pre-split,
//    from a GGUF (tokenizer.ggml.model = "gemma4") or a Hugging Face tokenizer.json
//    (src/tokenizer/bpe.cc). ref: formats.md §5.5, gemma-architecture.md §4.2.
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

enum class TokenizerAlgo { kSpm, kGemma4Bpe };

// Options of the Gemma 4 BPE that differ between its two sources (bpe.cc).
struct BpeOptions {
  bool newline_split = true;       // pre-split into runs of '\n' and runs of other characters
  bool whole_newline_run = false;  // llama.cpp: an all-'\n' chunk that is a token is one token
  bool ignore_merges = false;      // HF ignore_merges: a chunk that is a token is one token
  bool hf_added_tokens = false;    // HF AddedVocabulary matching (leftmost-longest, 2 phases)
};

class Tokenizer {
 public:
  // Dispatches on tokenizer.ggml.model: "llama" (Gemma 3 SPM) or "gemma4" (BPE).
  static Result<Tokenizer> from_gguf(const GgufFile& f);
  // Hugging Face tokenizer.json with a BPE model in Gemma 4's configuration (bpe.cc).
  static Result<Tokenizer> from_hf_json(std::string_view json_text);
  static Result<Tokenizer> from_hf_json_file(const std::string& path);
  // Gemma 4 BPE from explicit tables. merges[i] is "LEFT RIGHT" with rank i.
  static Result<Tokenizer> from_bpe_vocab(std::vector<std::string> tokens,
                                          std::vector<TokenType> types,
                                          const std::vector<std::string>& merges, int bos, int eos,
                                          BpeOptions opt);
  // Build from explicit tables (tests, toy vocabularies).
  static Result<Tokenizer> from_vocab(std::vector<std::string> tokens, std::vector<float> scores,
                                      std::vector<TokenType> types, int bos, int eos, bool add_bos,
                                      bool add_space_prefix);

  // Text -> ids. add_bos prepends <bos> when the vocabulary asks for it; parse_special lets
  // CONTROL tokens written in the text (e.g. "<start_of_turn>") become their ids. User
  // content should be tokenized with parse_special = false.
  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const;
  // Text made of pieces where special-token texts are recognised only in pieces marked
  // `special` (chat-template markup) and never in the others (message content); unlike
  // encoding the pieces one by one, BPE merges still run across piece boundaries, so the
  // ids equal encode(concatenation, parse_special = true) whenever the content holds no
  // special-token text.
  struct Segment {
    std::string_view text;
    bool special;
  };
  std::vector<int32_t> encode_segments(const std::vector<Segment>& segs, bool add_bos) const;

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
  TokenizerAlgo algo() const { return algo_; }

 private:
  Status init();
  Status init_bpe(const std::vector<std::string>& merges);
  struct Frag {
    int32_t id;  // special token id, or -1 for raw text
    std::string text;
  };
  void bpe_encode_frags(std::vector<Frag> frags, std::vector<int32_t>& out) const;
  void bpe_encode_chunk(std::string_view chunk, std::vector<int32_t>& out) const;
  void split_specials(std::vector<Frag>& frags, bool parse_special, int phase) const;
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
  TokenizerAlgo algo_ = TokenizerAlgo::kSpm;
  // Gemma 4 BPE only.
  BpeOptions bpe_;
  std::unordered_map<std::string, int32_t> merge_rank_;  // key: LEFT '\0' RIGHT
  std::vector<bool> added_normalized_;  // HF added token matched on normalized text
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
