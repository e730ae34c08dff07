// ThreadPool: the static split hands each thread at most one contiguous slice of whole
// grains, in thread order, covering [0, n) (callers rely on it: per-thread scratch, and
// partitions that do not depend on timing).
#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "core/thread_pool.h"

namespace g4 {

TEST(ThreadPool, StaticSlicesAreContiguousWholeGrains) {
  for (int threads : {1, 2, 3, 4}) {
    ThreadPool pool(threads);
    for (size_t n : {size_t(1), size_t(7), size_t(64), size_t(1000)}) {
      for (size_t grain : {size_t(1), size_t(16)}) {
        std::vector<int> owner(n, -1);
        std::vector<std::atomic<int>> calls(static_cast<size_t>(threads));
        pool.parallel_for(n, grain, [&](size_t b, size_t e, int t) {
          ++calls[size_t(t)];
          EXPECT_TRUE(b % grain == 0) << b;
          for (size_t i = b; i < e; ++i) owner[i] = t;
        });
        for (size_t i = 0; i < n; ++i) ASSERT_GE(owner[i], 0) << i;
        for (size_t i = 1; i < n; ++i) ASSERT_LE(owner[i - 1], owner[i]) << i;  // in order
        for (auto& c : calls) EXPECT_LE(c.load(), 1);
      }
    }
  }
}

}  // namespace g4
