// runtime/sequence: the per-token rules Session::generate and the server's Scheduler share,
// on a toy vocabulary and hand-made logits rows (no model): padding mask, logit_bias, end of
// turn, stop strings, the token and context limits, logprobs of the model's distribution.
#include "runtime/sequence.h"

#include <gtest/gtest.h>

#include <cmath>

#include "g4/engine.h"
#include "tokenizer/tokenizer.h"
#include "toy_vocab.h"

namespace g4 {
namespace {

// ids: 0 <eos>, 1 "a", 2 "b", 3 "ab", 4 "c", then 256 byte tokens.
Tokenizer toy() {
  return toy_vocab({"<eos>", "a", "b", "ab", "c"});
}

GenerateOptions greedy() {
  GenerateOptions g;
  g.sampling.temperature = 0;
  g.max_tokens = 100;
  return g;
}

// A logits row over `vocab` with `hot` highest, then `second`.
std::vector<float> row(int vocab, int hot, int second = -1) {
  std::vector<float> r(size_t(vocab), 0.f);
  r[size_t(hot)] = 5.f;
  if (second >= 0) r[size_t(second)] = 4.f;
  return r;
}

TEST(Sequence, GreedyTextAndLength) {
  const Tokenizer tk = toy();
  const int V = tk.size();
  GenerateOptions g = greedy();
  g.max_tokens = 2;
  Sequence s(tk, V, g);
  auto o = s.next(row(V, 3).data(), 10, 100);
  EXPECT_EQ(o.token, 3);
  EXPECT_EQ(o.text, "ab");
  EXPECT_EQ(o.finish, "");
  o = s.next(row(V, 4).data(), 11, 100);
  EXPECT_EQ(o.token, 4);
  EXPECT_EQ(o.finish, "length");  // max_tokens
  EXPECT_EQ(s.text(), "abc");
  EXPECT_EQ(s.tokens(), (std::vector<int32_t>{3, 4}));
}

TEST(Sequence, FullContextFinishesAsLength) {
  const Tokenizer tk = toy();
  Sequence s(tk, tk.size(), greedy());
  EXPECT_EQ(s.next(row(tk.size(), 1).data(), 63, 64).finish, "");
  EXPECT_EQ(s.next(row(tk.size(), 1).data(), 64, 64).finish, "length");  // no room to feed it
}

TEST(Sequence, EndOfTurnTakesNoToken) {
  const Tokenizer tk = toy();
  Sequence s(tk, tk.size(), greedy());
  const auto o = s.next(row(tk.size(), 0).data(), 5, 100);
  EXPECT_EQ(o.token, -1);
  EXPECT_EQ(o.finish, "stop");
  EXPECT_EQ(s.n_generated(), 0);
  GenerateOptions g = greedy();
  g.stop_at_eog = false;  // ignore_eos
  Sequence t(tk, tk.size(), g);
  EXPECT_EQ(t.next(row(tk.size(), 0).data(), 5, 100).token, 0);
}

TEST(Sequence, StopStringCutsTheText) {
  const Tokenizer tk = toy();
  GenerateOptions g = greedy();
  g.stop = {"bc"};
  Sequence s(tk, tk.size(), g);
  auto o = s.next(row(tk.size(), 3).data(), 1, 100);  // "ab": "b" may start the stop string
  EXPECT_EQ(o.text, "a");
  o = s.next(row(tk.size(), 4).data(), 2, 100);  // "c" completes "bc"
  EXPECT_EQ(o.finish, "stop");
  EXPECT_EQ(o.text, "");
  EXPECT_EQ(s.text(), "a");
}

TEST(Sequence, PaddingRowsAreNeverSampled) {
  const Tokenizer tk = toy();
  const int V = tk.size() + 7;  // an embedding with padding rows
  Sequence s(tk, V, greedy(), 2);
  std::vector<float> r = row(V, V - 1, 2);  // the padding row is the largest
  const auto o = s.next(r.data(), 1, 100);
  EXPECT_EQ(o.token, 2);
  ASSERT_EQ(o.top.size(), 2u);
  EXPECT_EQ(o.top[0].id, 2);  // logprobs cover the tokenizer's ids only
}

TEST(Sequence, LogitBiasSteersButLogprobsReportTheModel) {
  const Tokenizer tk = toy();
  const int V = tk.size();
  GenerateOptions g = greedy();
  g.logit_bias = {{1, -100.f}, {4, 0.5f}};
  Sequence s(tk, V, g, 1);
  std::vector<float> r = row(V, 1, 2);  // 1 (banned) > 2 > 4 (0 + 0.5)
  auto o = s.next(r.data(), 1, 100);
  EXPECT_EQ(o.token, 2);
  // logprob of 2 under the unbiased softmax, computed here from its definition
  double z = 0;
  for (float x : r) z += std::exp(double(x));
  EXPECT_NEAR(o.logprob, 4.0 - std::log(z), 1e-5);
  ASSERT_EQ(o.top.size(), 1u);
  EXPECT_EQ(o.top[0].id, 1);  // the model's favourite, though it was banned
  GenerateOptions h = greedy();
  h.logit_bias = {{4, 100.f}};
  Sequence t(tk, V, h);
  EXPECT_EQ(t.next(row(V, 1, 2).data(), 1, 100).token, 4);
}

// A processor added by the caller (the grammar mask's slot) runs after the built-in ones and
// sees every taken token.
TEST(Sequence, ProcessorsRunInOrderAndSeeTokens) {
  struct OnlyC final : LogitsProcessor {
    std::vector<int32_t>* seen;
    explicit OnlyC(std::vector<int32_t>* s) : seen(s) {}
    void apply(float* l, int vocab) override {
      for (int i = 0; i < vocab; ++i)
        if (i != 4) l[i] = -INFINITY;
    }
    void accept(int32_t t) override { seen->push_back(t); }
  };
  const Tokenizer tk = toy();
  std::vector<int32_t> seen;
  Sequence s(tk, tk.size(), greedy());
  s.add_processor(std::make_unique<OnlyC>(&seen));
  EXPECT_EQ(s.next(row(tk.size(), 1).data(), 1, 100).token, 4);
  EXPECT_EQ(seen, (std::vector<int32_t>{4}));
}

}  // namespace
}  // namespace g4
