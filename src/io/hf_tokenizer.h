// The tokenizer of a Hugging Face checkpoint directory as GGUF tokenizer.ggml.* metadata, the
// way llama.cpp's convert_hf_to_gguf.py writes it (formats.md §5.1), for `g4 convert`:
//  - gemma4: tokenizer.ggml.model "gemma4", tokens in id order, every score the placeholder
//    -1000, types as g4's tokenizer.json reader assigns them (<0xXX> BYTE, special added
//    tokens CONTROL, other added tokens and the seven chat markers USER_DEFINED), the merges,
//    add_bos_token = true, add_space_prefix = false;
//  - gemma3: tokenizer.ggml.model "llama" (SentencePiece-style BPE). llama.cpp's converter
//    reads tokenizer.model; g4 reads only tokenizer.json: learned pieces score minus their
//    position after the first NORMAL piece (SentencePiece's order; on the real Gemma 3
//    vocabulary this equals llama.cpp's score for every merged piece), bytes 0, added tokens
//    -1000, non-special added tokens with U+2581 written as spaces as llama.cpp does. Types
//    from tokenizer.json cannot tell which non-special added tokens tokenizer.model marks
//    CONTROL: on the real Gemma 3 vocabulary 6243 of them (<unusedN>, <mask>, markup) are
//    USER_DEFINED here but CONTROL in llama.cpp's file.
// Special ids from tokenizer_config.json (bos/eos/unk/pad_token) when present, else the Gemma
// texts <bos> <eos> <unk> <pad>; the chat template from tokenizer_config.json or
// chat_template.jinja. The vocabulary is first loaded by Tokenizer::from_hf_json, so a
// tokenizer.json g4 would refuse on `g4 run -m DIR` is refused here too.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace g4 {

struct HfVocab {
  std::string model;  // "llama" | "gemma4"
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  std::vector<std::string> merges;  // gemma4 only
  int64_t bos = -1, eos = -1, unk = -1, pad = -1;
  bool add_bos = true, add_eos = false;
  std::string chat_template;
};

// std::nullopt when `dir` has no tokenizer.json.
Result<std::optional<HfVocab>> read_hf_vocab(const std::string& dir, const std::string& arch);
// tokenizer_config.json's `chat_template` string, else chat_template.jinja, else "".
Result<std::string> read_hf_chat_template(const std::string& dir);

}  // namespace g4
