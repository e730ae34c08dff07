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

}  // namespace g4
