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
  KvCache kv({{1, 2, 8}, {1, 2, 0}}, 100, 16, /*f32=*/false, /*ring_slack=*/32);
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

// Gemma 4 KV sharing: a sharer owns no memory and sees its donor's arrays and capacity.
TEST(KvCache, SharedLayersReadTheirDonor) {
  KvCache kv({{1, 4, 8}, {2, 8, 0}, {1, 4, 8, 0}, {2, 8, 0, 1}}, 100, 16);
  EXPECT_EQ(kv.owner(2), 0);
  EXPECT_EQ(kv.owner(3), 1);
  EXPECT_EQ(kv.owner(1), 1);
  EXPECT_EQ(kv.capacity(2), 24);
  EXPECT_EQ(kv.capacity(3), 100);
  ASSERT_TRUE(kv.add_sequence(0).ok());
  EXPECT_EQ(kv.k(0, 2), kv.k(0, 0));
  EXPECT_EQ(kv.v_data(0, 3), kv.v_data(0, 1));
  EXPECT_EQ(kv.bytes(), size_t(2 * (24 * 1 * 4 + 100 * 2 * 8) * 2));  // sharers cost nothing
}

TEST(KvCache, Float32StorageKeepsValuesExactly) {
  KvCache kv({{1, 4, 0}}, 10, 4, /*f32=*/true);
  ASSERT_TRUE(kv.add_sequence(1).ok());
  const float k[4] = {1.0f / 3, -2.5e-5f, 7e5f, 0.1f}, v[4] = {3, 2, 1, 1e-8f};
  kv.store(1, 0, 2, k, v);
  const float* kc = static_cast<const float*>(kv.k_data(1, 0)) + 2 * 4;
  const float* vc = static_cast<const float*>(kv.v_data(1, 0)) + 2 * 4;
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(kc[i], k[i]);
    EXPECT_EQ(vc[i], v[i]);
  }
  EXPECT_EQ(kv.bytes(), size_t(2 * 10 * 4 * 4));
}

}  // namespace g4
