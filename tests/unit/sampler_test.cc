#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "sampling/sampler.h"

namespace g4 {

TEST(Sampler, GreedyIsArgmaxLowestIdOnTies) {
  SamplingParams p;
  p.temperature = 0;
  Sampler s(p);
  const float z[5] = {0.1f, 3.f, 3.f, -1.f, 2.f};
  EXPECT_EQ(s.sample(z, 5), 1);
}

TEST(Sampler, SameSeedSameDraws) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.f;
  p.min_p = 0.f;
  p.seed = 42;
  std::vector<float> z(100);
  for (int i = 0; i < 100; ++i) z[size_t(i)] = std::sin(float(i));
  Sampler a(p), b(p);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(a.sample(z.data(), 100), b.sample(z.data(), 100));
}

// Top-k selection (nth_element + sort of k) picks the same ordered survivors as a full sort:
// with the one dropped candidate's probability underflowing to 0, top_k = vocab - 1 and
// top_k = 0 (full sort) must give identical draws, ties (broken by id) included.
TEST(Sampler, TopKSelectionMatchesFullSort) {
  const int vocab = 5000;
  std::vector<float> lg(static_cast<size_t>(vocab));
  for (int i = 0; i < vocab; ++i) lg[size_t(i)] = float((i * 7919) % 61) * 0.05f;  // many ties
  lg[123] = -2000.f;  // exp(-2000) == 0 in double
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.9f;
  p.min_p = 0.f;
  p.seed = 9;
  SamplingParams full = p;
  full.top_k = 0;
  p.top_k = vocab - 1;
  Sampler a(p), b(full);
  for (int i = 0; i < 300; ++i) ASSERT_EQ(a.sample(lg.data(), vocab), b.sample(lg.data(), vocab));
}

TEST(Sampler, TopKOneIsGreedy) {
  SamplingParams p;
  p.temperature = 5.f;
  p.top_k = 1;
  p.seed = 3;
  Sampler s(p);
  const float z[4] = {1, 2, 9, 3};
  for (int i = 0; i < 20; ++i) EXPECT_EQ(s.sample(z, 4), 2);
}

TEST(Sampler, TopPAndMinPCutTheTail) {
  SamplingParams p;
  p.temperature = 1.f;
  p.top_k = 0;
  p.top_p = 0.5f;
  p.min_p = 0.f;
  p.seed = 9;
  const float z[3] = {std::log(0.6f), std::log(0.3f), std::log(0.1f)};
  Sampler s(p);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.sample(z, 3), 0);  // 0.6 >= top_p alone
  p.top_p = 1.f;
  p.min_p = 0.4f;  // keep p >= 0.24: ids 0 and 1
  Sampler m(p);
  std::map<int, int> seen;
  for (int i = 0; i < 300; ++i) seen[m.sample(z, 3)]++;
  EXPECT_EQ(seen.count(2), 0u);
  EXPECT_GT(seen[1], 0);
}

TEST(Sampler, PenaltiesDiscourageRepeats) {
  SamplingParams p;
  p.temperature = 0;
  p.repetition_penalty = 2.f;
  Sampler s(p);
  const float z[2] = {2.f, 1.5f};
  EXPECT_EQ(s.sample(z, 2), 0);
  s.accept(0);
  EXPECT_EQ(s.sample(z, 2), 1);  // 2/2 = 1 < 1.5
  SamplingParams q;
  q.temperature = 0;
  q.presence_penalty = 1.f;
  Sampler t(q);
  t.accept(0);
  EXPECT_EQ(t.sample(z, 2), 1);
}

TEST(Sampler, ValidatesParams) {
  SamplingParams p;
  p.top_p = 0.f;
  EXPECT_FALSE(p.validate().ok());
  p = {};
  p.temperature = -1.f;
  EXPECT_FALSE(p.validate().ok());
  p = {};
  EXPECT_TRUE(p.validate().ok());
}

}  // namespace g4
