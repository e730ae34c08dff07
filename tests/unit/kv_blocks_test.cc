// KvBlockManager (runtime/kv_blocks.h) without a model: block accounting, forks that share by
// reference, copy on write, truncation, exhaustion and the preemption choice. A random-walk
// test stores a value per position in block storage driven only by the manager's tables and
// copy orders, and checks every sequence still reads exactly what it wrote: a shared block
// written without its copy would show up as another sequence's data.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "runtime/kv_blocks.h"

namespace g4 {

TEST(KvBlocks, GrowsForkSharesAndCopiesOnWrite) {
  KvBlockManager m(4, 10);
  ASSERT_TRUE(m.add_sequence(0).ok());
  auto g = m.grow(0, 10);  // 3 blocks, the last half full
  ASSERT_TRUE(g.ok());
  EXPECT_TRUE(g.value().empty());
  EXPECT_EQ(m.table(0).size(), 3u);
  EXPECT_EQ(m.stats().free, 7);
  // A fork of 10 positions shares all three blocks: no copy, no new block.
  ASSERT_TRUE(m.fork(0, 1, 10).ok());
  EXPECT_EQ(m.table(1), m.table(0));
  EXPECT_EQ(m.stats().shared, 3);
  EXPECT_EQ(m.stats().free, 7);
  // The fork writes on: its half-full last block is copied first (2 positions of data).
  EXPECT_EQ(m.blocks_needed(1, 12), 1);
  g = m.grow(1, 12);
  ASSERT_TRUE(g.ok());
  ASSERT_EQ(g.value().size(), 1u);
  EXPECT_EQ(g.value()[0].from, m.table(0)[2]);
  EXPECT_EQ(g.value()[0].to, m.table(1)[2]);
  EXPECT_EQ(g.value()[0].tokens, 2);
  EXPECT_EQ(m.stats().shared, 2);
  // The source writing on now owns its last block alone: no copy.
  g = m.grow(0, 11);
  ASSERT_TRUE(g.ok());
  EXPECT_TRUE(g.value().empty());
  // A fork at a block boundary shares whole blocks only; writing after it needs no copy.
  ASSERT_TRUE(m.fork(0, 2, 8).ok());
  g = m.grow(2, 9);
  ASSERT_TRUE(g.ok());
  EXPECT_TRUE(g.value().empty());
  EXPECT_TRUE(m.check().ok()) << m.check().message();
  // Removing sequences gives every block back.
  for (int s : {0, 1, 2}) m.remove_sequence(s);
  EXPECT_EQ(m.stats().free, 10);
  EXPECT_EQ(m.stats().used, 0);
  EXPECT_TRUE(m.check().ok());
}

TEST(KvBlocks, ExhaustionChangesNothingAndNamesTheShortfall) {
  KvBlockManager m(16, 4);
  ASSERT_TRUE(m.add_sequence(7).ok());
  ASSERT_TRUE(m.grow(7, 40).ok());  // 3 blocks
  EXPECT_TRUE(m.can_admit(16));
  EXPECT_FALSE(m.can_admit(17));
  auto g = m.grow(7, 80);  // 5 blocks > 4
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.error().find("2 blocks needed, 1 free"), std::string::npos) << g.error();
  EXPECT_EQ(m.length(7), 40);
  EXPECT_EQ(m.table(7).size(), 3u);
  m.truncate(7, 16);
  EXPECT_EQ(m.stats().free, 3);
  EXPECT_TRUE(m.grow(7, 64).ok());
  EXPECT_TRUE(m.check().ok());
  EXPECT_FALSE(m.fork(7, 8, 65).ok());
  EXPECT_FALSE(m.fork(9, 8, 1).ok());
}

TEST(KvBlocks, VictimIsTheYoungestOtherSequence) {
  KvBlockManager m(8, 8);
  for (int s : {3, 1, 2}) ASSERT_TRUE(m.add_sequence(s).ok());
  EXPECT_EQ(m.victim(-1), 2);  // added last
  EXPECT_EQ(m.victim(2), 1);
  m.remove_sequence(1);
  EXPECT_EQ(m.victim(2), 3);
  m.remove_sequence(3);
  EXPECT_EQ(m.victim(2), -1);
}

TEST(KvBlocks, RandomWalkKeepsEverySequencesData) {
  for (int bt : {1, 3, 16}) {
    const int n_blocks = 40;
    KvBlockManager m(bt, n_blocks);
    std::vector<int64_t> storage(size_t(n_blocks) * size_t(bt), -1);  // the "K/V"
    std::map<int, std::vector<int64_t>> want;                         // what each seq wrote
    std::mt19937 rng(1234 + uint32_t(bt));
    int64_t stamp = 0;
    auto read = [&](int s) {
      std::vector<int64_t> v;
      for (int64_t p = 0; p < m.length(s); ++p)
        v.push_back(storage[size_t(m.table(s)[size_t(p / bt)]) * size_t(bt) + size_t(p % bt)]);
      return v;
    };
    int shared_seen = 0;
    for (int step = 0; step < 3000; ++step) {
      const int op = int(rng() % 10);
      const int s = int(rng() % 6);
      if (op < 4) {  // grow and write
        if (!m.has_sequence(s)) {
          ASSERT_TRUE(m.add_sequence(s).ok());
        }
        const int64_t from = m.length(s), to = from + int64_t(rng() % (3 * bt + 2));
        const KvBlockStats before = m.stats();
        auto g = m.grow(s, to);
        if (!g.ok()) {
          EXPECT_EQ(m.length(s), from);
          EXPECT_EQ(m.stats().free, before.free);
          continue;
        }
        for (const KvBlockCopy& c : g.value())
          for (int64_t i = 0; i < c.tokens; ++i)
            storage[size_t(c.to) * size_t(bt) + size_t(i)] =
                storage[size_t(c.from) * size_t(bt) + size_t(i)];
        for (int64_t p = from; p < to; ++p) {
          storage[size_t(m.table(s)[size_t(p / bt)]) * size_t(bt) + size_t(p % bt)] = ++stamp;
          want[s].push_back(stamp);
        }
      } else if (op < 6) {  // fork a prefix into an empty or new sequence
        const int d = int(rng() % 6);
        if (!m.has_sequence(s) || d == s) continue;
        m.remove_sequence(d);
        want.erase(d);
        const int64_t n = m.length(s) ? int64_t(rng() % uint64_t(m.length(s) + 1)) : 0;
        ASSERT_TRUE(m.fork(s, d, n).ok());
        want[d].assign(want[s].begin(), want[s].begin() + n);
      } else if (op < 8) {  // cut back
        if (!m.has_sequence(s) || m.length(s) == 0) continue;
        const int64_t n = int64_t(rng() % uint64_t(m.length(s)));
        m.truncate(s, n);
        want[s].resize(size_t(n));
      } else if (op < 9) {
        m.remove_sequence(s);
        want.erase(s);
      } else {  // preempt the youngest other sequence when memory is short
        if (m.stats().free < 4) {
          const int v = m.victim(s);
          if (v >= 0) {
            m.remove_sequence(v);
            want.erase(v);
          }
        }
      }
      shared_seen = std::max<int>(shared_seen, int(m.stats().shared));
      ASSERT_TRUE(m.check().ok()) << "step " << step << ": " << m.check().message();
      for (const auto& [id, w] : want) ASSERT_EQ(read(id), w) << "step " << step << " seq " << id;
    }
    EXPECT_GT(shared_seen, 0);  // the walk did share blocks
  }
}

}  // namespace g4
