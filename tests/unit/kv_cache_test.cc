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
