// A toy SentencePiece-style vocabulary for tests: the given pieces (scores and types), then the
// 256 byte tokens <0x00>..<0xFF>; <bos> = <eos> = id 0.
#pragma once
#include <cstdio>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace g4 {

inline Tokenizer toy_vocab(std::vector<std::string> pieces, std::vector<float> scores,
                           std::vector<TokenType> types) {
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    pieces.push_back(name);
    scores.push_back(0);
    types.push_back(TokenType::kByte);
  }
  return std::move(Tokenizer::from_vocab(pieces, scores, types, 0, 0, false, false).value());
}

// Pieces with score 0; id 0 is a CONTROL token (end of turn).
inline Tokenizer toy_vocab(const std::vector<std::string>& pieces) {
  std::vector<TokenType> ty(pieces.size(), TokenType::kNormal);
  ty[0] = TokenType::kControl;
  return toy_vocab(pieces, std::vector<float>(pieces.size(), 0.f), ty);
}

}  // namespace g4
