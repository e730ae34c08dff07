// A decode step allocates nothing once warmed up: global operator new is replaced by a
// counting one (this is its own test binary, so no other test sees the replacement), the
// tiny Gemma 3 model decodes a few tokens to size every scratch buffer, and the next steps
// must not reach the heap: not in the forward, the thread pool, the matmuls or attention.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "g4/engine.h"
#include "model/model.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define G4_NO_NEW_REPLACEMENT 1  // ASan owns the allocator: counting would mismatch new/free
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define G4_NO_NEW_REPLACEMENT 1
#endif

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocs{0};

[[maybe_unused]] void* counted(std::size_t n, std::size_t align = 0) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocs.fetch_add(1);
  if (n == 0) n = 1;
  void* p = align > alignof(std::max_align_t)
                ? std::aligned_alloc(align, (n + align - 1) / align * align)
                : std::malloc(n);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
}  // namespace

void* operator new(std::size_t n) {
  return counted(n);
}
void* operator new[](std::size_t n) {
  return counted(n);
}
void* operator new(std::size_t n, std::align_val_t a) {
  return counted(n, std::size_t(a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return counted(n, std::size_t(a));
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}

namespace g4 {

TEST(NoAlloc, DecodeStepAfterWarmUp) {
#if defined(G4_NO_NEW_REPLACEMENT)
  GTEST_SKIP() << "allocation counting needs the plain allocator (runs in the Release suite)";
#endif
  // Gemma 3, and the Gemma 4 MoE of the brief's shape (router, one-token expert path).
  for (const char* file : {"tiny/tiny_1b_like.gguf", "tiny_gemma4/tiny_moe_swiglu.gguf"})
    for (int threads : {1, 2}) {
      EngineOptions o;
      o.model_path = std::string(G4_SOURCE_DIR) + "/tests/golden/" + file;
      o.n_threads = threads;
      o.n_ctx = 64;
      o.max_chunk = 16;
      auto e = Engine::load(o);
      ASSERT_TRUE(e.ok()) << e.error();
      const Model& m = e.value()->model();
      KvCache kv(m.kv_geometry(), 64, 16);
      ASSERT_TRUE(kv.add_sequence(0).ok());
      std::vector<int32_t> ids = {2, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24};
      StepBatch b;
      b.seqs.push_back({0, std::span<const int32_t>(ids.data(), 4), 0, false});
      StepOutput out;
      ASSERT_TRUE(m.forward(b, kv, e.value()->exec(), out).ok());
      for (int64_t pos = 4; pos < 16; ++pos) {
        b.seqs[0] = {0, std::span<const int32_t>(ids.data() + pos, 1), pos, false};
        const bool measure = pos >= 8;  // steps 4..7 warm up
        g_allocs = 0;
        g_counting = measure;
        const Status s = m.forward(b, kv, e.value()->exec(), out);
        g_counting = false;
        ASSERT_TRUE(s.ok()) << s.message();
        if (measure) {
          EXPECT_EQ(g_allocs.load(), 0) << file << " threads " << threads << " position " << pos;
        }
      }
    }
}

}  // namespace g4
