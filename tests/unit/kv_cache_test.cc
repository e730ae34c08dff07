#include <gtest/gtest.h>

#include "runtime/kv_cache.h"

namespace g4 {

TEST(KvCache, GeometryAndTruncation) {
  KvCache kv({{1, 4, 8}, {2, 4, 0}}, 100, 16);
  EXPECT_EQ(kv.capacity(0), 24);   // window + max_chunk
  EXPECT_EQ(kv.capacity(1), 100);  // full context
  ASSERT_TRUE(kv.add_sequence(3).ok());
  EXPECT_FALSE(kv.add_sequence(3).ok());
  kv.set_length(3, 50);
  EXPECT_TRUE(kv.can_truncate(3, 40));   // 10 back: ring still holds the window
  EXPECT_FALSE(kv.can_truncate(3, 30));  // 20 back > capacity - window
  EXPECT_FALSE(kv.can_truncate(3, 60));
  EXPECT_EQ(kv.bytes(), size_t(2 * (24 * 1 * 4 + 100 * 2 * 4) * 2));
  kv.remove_sequence(3);
  EXPECT_FALSE(kv.has_sequence(3));
}

TEST(KvCache, CopyPrefixBetweenSequences) {
  // Layer 0 sliding (window 8, ring 8 + 32 slack), layer 1 global.
  KvCache kv({{1, 2, 8}, {1, 2, 0}}, 100, 16, 32);
  EXPECT_EQ(kv.capacity(0), 40);
  ASSERT_TRUE(kv.add_sequence(0).ok());
  ASSERT_TRUE(kv.add_sequence(1).ok());
  // Write position p as value p into both layers of sequence 0, positions 0..49.
  for (int p = 0; p < 50; ++p) {
    for (int l = 0; l < 2; ++l) {
      const int64_t slot = p % kv.capacity(l);
      kv.k(0, l)[slot * 2] = uint16_t(p);
      kv.v(0, l)[slot * 2 + 1] = uint16_t(p + 1000);
    }
  }
  kv.set_length(0, 50);
  EXPECT_TRUE(kv.can_copy_prefix(0, 20));   // 30 written after 20: ring of 40 still has 12..19
  EXPECT_FALSE(kv.can_copy_prefix(0, 15));  // 35 > 40 - 8: positions 7..14 overwritten
  kv.copy_prefix(0, 1, 20);
  EXPECT_EQ(kv.length(1), 20);
  for (int p = 12; p < 20; ++p) {  // the window before 20 in the sliding layer
    EXPECT_EQ(kv.k(1, 0)[(p % 40) * 2], p);
    EXPECT_EQ(kv.v(1, 0)[(p % 40) * 2 + 1], p + 1000);
  }
  for (int p = 0; p < 20; ++p) EXPECT_EQ(kv.k(1, 1)[p * 2], p);  // every position, global
  EXPECT_EQ(kv.length(0), 50);                                   // the source is untouched
}

}  // namespace g4
