// Tokenizer on the toy vocabulary of formats.md §6.10 (expected ids worked out there from
// llama.cpp's algorithm), and UTF-8 stream hold-back.
#include <gtest/gtest.h>

#include "tokenizer/tokenizer.h"
#include "toy_vocab.h"

namespace g4 {

static Tokenizer toy() {
  std::vector<std::string> t{"<unk>",
                             "a",
                             "b",
                             "\xE2\x96\x81",
                             "ab",
                             "ba",
                             "\xE2\x96\x81"
                             "a",
                             "\xE2\x96\x81"
                             "ab",
                             "A",
                             "B"};
  std::vector<float> s{0, -5, -5, -5, -1, -1, -2, -0.5f, -5, -5};
  std::vector<TokenType> ty(t.size(), TokenType::kNormal);
  ty[0] = TokenType::kUnknown;
  return toy_vocab(t, s, ty);
}

using Ids = std::vector<int32_t>;

TEST(SpmTokenizer, ToyVocabulary) {
  const Tokenizer tk = toy();
  EXPECT_EQ(tk.encode("ab ab", false, false), (Ids{4, 7}));
  EXPECT_EQ(tk.encode("aba", false, false), (Ids{4, 1}));
  EXPECT_EQ(tk.encode("bab", false, false), (Ids{5, 2}));
  EXPECT_EQ(tk.encode("a\xE2\x98\x83", false, false), (Ids{1, 236, 162, 141}));
  EXPECT_EQ(tk.encode("\xE2\x41\x42", false, false), (Ids{236, 75, 76}));
  EXPECT_EQ(tk.encode("", false, false), (Ids{}));
}

TEST(SpmTokenizer, DecodeBytesAndSpaces) {
  const Tokenizer tk = toy();
  EXPECT_EQ(tk.decode({4, 7}), "ab ab");
  EXPECT_EQ(tk.decode({1, 236, 162, 141}), "a\xE2\x98\x83");
}

TEST(Utf8Stream, HoldsBackIncompleteCharacters) {
  Utf8Stream s;
  EXPECT_EQ(s.push("a\xE2"), "a");
  EXPECT_EQ(s.push("\x98"), "");
  EXPECT_EQ(s.push("\x83!"), "\xE2\x98\x83!");
  EXPECT_EQ(s.push("\xF0\x9F"), "");
  EXPECT_EQ(s.flush(), "\xF0\x9F");
}

}  // namespace g4
