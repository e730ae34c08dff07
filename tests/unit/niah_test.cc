// Needle-in-a-haystack cases without a model (eval/niah.h): they fit the context, fill most of
// it, put the needle where asked, share the haystack across depths and repeat for a seed.
#include <gtest/gtest.h>

#include "eval/niah.h"
#include "io/gguf.h"
#include "tokenizer/tokenizer.h"

namespace g4 {

namespace {

struct Tok {
  std::unique_ptr<GgufFile> file;
  Tokenizer tok;
};

Tok gemma4_tok() {
  auto f = GgufFile::open(std::string(G4_SOURCE_DIR) + "/tests/golden/gemma4_tok/tokenizer.gguf");
  EXPECT_TRUE(f.ok());
  auto t = Tokenizer::from_gguf(*f.value());
  EXPECT_TRUE(t.ok());
  return {std::move(f).value(), std::move(t).value()};
}

}  // namespace

TEST(Niah, CasesFitPlaceTheNeedleAndShareTheHaystack) {
  const Tok t = gemma4_tok();
  for (bool chat : {false, true}) {
    NiahOptions o;
    o.chat = chat;
    for (int64_t ctx : {256, 1000, 3000}) {
      std::vector<NiahCase> cs;
      for (double d : {0.0, 0.5, 1.0}) {
        auto c = make_niah_case(t.tok, true, o, ctx, d, 0);
        ASSERT_TRUE(c.ok()) << c.error();
        const NiahCase& k = c.value();
        EXPECT_LE(int64_t(k.ids.size()), ctx);
        EXPECT_GE(int64_t(k.ids.size()), ctx * 85 / 100) << "ctx " << ctx;
        const std::string text = t.tok.decode(k.ids, true);
        const std::string needle = "The special magic number for " + k.key + " is: " + k.answer;
        ASSERT_NE(text.find(needle), std::string::npos) << text.substr(0, 300);
        // The needle's depth in tokens: near the asked fraction (the question follows it).
        const double at = double(k.needle_token) / double(k.ids.size());
        if (ctx >= 1000) {
          EXPECT_NEAR(at, d, 0.12) << "ctx " << ctx << " depth " << d;
        }
        EXPECT_EQ(k.answer.size(), 7u);
        cs.push_back(k);
      }
      // Same key, answer and haystack at every depth: the ids agree up to the first needle.
      EXPECT_EQ(cs[0].key, cs[2].key);
      EXPECT_EQ(cs[0].answer, cs[2].answer);
      const size_t common = size_t(cs[1].needle_token) - 2;
      EXPECT_TRUE(
          std::equal(cs[1].ids.begin(), cs[1].ids.begin() + long(common), cs[2].ids.begin()));
    }
    // Same seed, same case; another trial or seed, another haystack.
    auto a = make_niah_case(t.tok, true, o, 1000, 0.5, 0).value();
    auto b = make_niah_case(t.tok, true, o, 1000, 0.5, 0).value();
    auto c = make_niah_case(t.tok, true, o, 1000, 0.5, 1).value();
    EXPECT_EQ(a.ids, b.ids);
    EXPECT_NE(a.ids, c.ids);
  }
  NiahOptions o;
  EXPECT_FALSE(make_niah_case(t.tok, true, o, 10, 0.5, 0).ok());
  EXPECT_FALSE(make_niah_case(t.tok, true, o, 1000, 1.5, 0).ok());
}

}  // namespace g4
