#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "kernels/attention.h"
#include "runtime/kv_cache.h"

namespace g4 {

namespace {
uint16_t& k16(KvCache& kv, int seq, int layer, int64_t pos, int i = 0) {
  return static_cast<uint16_t*>(kv.k_row(seq, layer, pos))[i];
}
uint16_t& v16(KvCache& kv, int seq, int layer, int64_t pos, int i = 0) {
  return static_cast<uint16_t*>(kv.v_row(seq, layer, pos))[i];
}
// Marks positions [from, to) of every owning layer of seq: K = p + tag, V = p + tag + 1000.
void write_marks(KvCache& kv, int seq, int64_t from, int64_t to, int tag = 0) {
  ASSERT_TRUE(kv.reserve(seq, to).ok());
  for (int64_t p = from; p < to; ++p) {
    for (int l = 0; l < kv.n_layers(); ++l) {
      if (kv.owner(l) != l) continue;
      k16(kv, seq, l, p) = uint16_t(p + tag);
      v16(kv, seq, l, p) = uint16_t(p + tag + 1000);
    }
  }
  kv.set_length(seq, to);
}
}  // namespace

TEST(KvCache, GeometryAndTruncation) {
  KvCache kv({{1, 4, 8}, {2, 4, 0}}, 100, 16);
  EXPECT_EQ(kv.capacity(0), 24);      // window + max_chunk
  EXPECT_EQ(kv.capacity(1), 100);     // full context (paged)
  EXPECT_EQ(kv.block_tokens(), 128);  // 256 cut to the context's power of two
  ASSERT_TRUE(kv.add_sequence(3).ok());
  EXPECT_FALSE(kv.add_sequence(3).ok());
  ASSERT_TRUE(kv.reserve(3, 50).ok());
  kv.set_length(3, 50);
  EXPECT_TRUE(kv.can_truncate(3, 40));   // 10 back: ring still holds the window
  EXPECT_FALSE(kv.can_truncate(3, 30));  // 20 back > capacity - window
  EXPECT_FALSE(kv.can_truncate(3, 60));
  // The ring (K and V, 24 slots of 4 fp16) plus one 128-position block of the global layer.
  EXPECT_EQ(kv.bytes(), size_t(2 * 24 * 4 * 2 + 2 * 128 * 2 * 4 * 2));
  EXPECT_EQ(kv.block_stats().used, 1);
  kv.remove_sequence(3);
  EXPECT_FALSE(kv.has_sequence(3));
  EXPECT_EQ(kv.block_stats().used, 0);
}

TEST(KvCache, CopyPrefixSharesGlobalBlocksAndCopiesRings) {
  // Layer 0 sliding (window 8, ring 8 + 32 slack), layer 1 global in 16-position blocks.
  KvCacheOptions o;
  o.n_ctx = 100;
  o.max_chunk = 16;
  o.ring_slack = 32;
  o.block_tokens = 16;
  o.pool_tokens = 200;
  KvCache kv({{1, 2, 8}, {1, 2, 0}}, o);
  EXPECT_EQ(kv.capacity(0), 40);
  ASSERT_TRUE(kv.add_sequence(0).ok());
  ASSERT_TRUE(kv.add_sequence(1).ok());
  write_marks(kv, 0, 0, 50);
  EXPECT_TRUE(kv.can_copy_prefix(0, 20));   // 30 written after 20: ring of 40 still has 12..19
  EXPECT_FALSE(kv.can_copy_prefix(0, 15));  // 35 > 40 - 8: positions 7..14 overwritten
  const int64_t used_before = kv.block_stats().used;
  kv.copy_prefix(0, 1, 20);
  EXPECT_EQ(kv.length(1), 20);
  EXPECT_EQ(kv.block_stats().used, used_before);  // no block copied
  EXPECT_EQ(kv.block_stats().shared, 2);          // positions 0..31
  for (int p = 12; p < 20; ++p) {                 // the window before 20 in the sliding layer
    EXPECT_EQ(k16(kv, 1, 0, p), p);
    EXPECT_EQ(v16(kv, 1, 0, p), p + 1000);
  }
  for (int p = 0; p < 20; ++p) EXPECT_EQ(k16(kv, 1, 1, p), p);  // every position, global
  EXPECT_EQ(kv.length(0), 50);                                  // the source is untouched

  // Copy on write: sequence 1 writes position 20, inside the block it shares with 0.
  write_marks(kv, 1, 20, 24, /*tag=*/500);
  EXPECT_EQ(kv.block_stats().shared, 1);  // 0..15 still shared; 16..31 now private
  for (int p = 16; p < 24; ++p) {
    EXPECT_EQ(k16(kv, 0, 1, p), p);                     // the source kept its values
    EXPECT_EQ(k16(kv, 1, 1, p), p < 20 ? p : p + 500);  // the copy has both
    EXPECT_EQ(v16(kv, 1, 1, p), p < 20 ? p + 1000 : p + 1500);
  }
  // The shared first block is counted once.
  EXPECT_EQ(kv.bytes(),
            size_t(2) * kv.ring_bytes_per_seq() + size_t(kv.block_stats().used) * kv.block_bytes());
}

TEST(KvCache, ReserveIsAllOrNothing) {
  KvCacheOptions o;
  o.n_ctx = 64;
  o.max_chunk = 16;
  o.block_tokens = 16;
  o.pool_tokens = 64;  // 4 blocks
  KvCache kv({{1, 2, 0}}, o);
  for (int s = 0; s < 3; ++s) ASSERT_TRUE(kv.add_sequence(s).ok());
  write_marks(kv, 0, 0, 40);  // 3 blocks
  EXPECT_EQ(kv.blocks_needed(1, 20), 2);
  Status st = kv.reserve_all({{1, 10}, {2, 10}});  // 2 blocks, 1 free
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("KV memory full"), std::string::npos) << st.message();
  EXPECT_EQ(kv.block_stats().free, 1);  // nothing was taken
  EXPECT_TRUE(kv.reserve_all({{1, 10}}).ok());
  kv.set_length(1, 10);
  // Cutting a sequence back releases its blocks past the new length.
  kv.set_length(0, 16);
  EXPECT_EQ(kv.block_stats().free, 2);
  EXPECT_TRUE(kv.reserve_all({{2, 30}}).ok());
}

// Gemma 4 KV sharing: a sharer owns no memory and sees its donor's storage and capacity.
TEST(KvCache, SharedLayersReadTheirDonor) {
  KvCache kv({{1, 4, 8}, {2, 8, 0}, {1, 4, 8, 0}, {2, 8, 0, 1}}, 100, 16);
  EXPECT_EQ(kv.owner(2), 0);
  EXPECT_EQ(kv.owner(3), 1);
  EXPECT_EQ(kv.owner(1), 1);
  EXPECT_EQ(kv.capacity(2), 24);
  EXPECT_EQ(kv.capacity(3), 100);
  ASSERT_TRUE(kv.add_sequence(0).ok());
  ASSERT_TRUE(kv.reserve(0, 10).ok());
  EXPECT_EQ(kv.view(0, 2).k, kv.view(0, 0).k);
  EXPECT_EQ(kv.view(0, 3).v, kv.view(0, 1).v);
  EXPECT_EQ(kv.view(0, 3).blocks, kv.view(0, 1).blocks);
  // Sharers cost nothing: the ring and one 128-position block of the global layer.
  EXPECT_EQ(kv.bytes(), size_t(2 * (24 * 1 * 4 + 128 * 2 * 8) * 2));
}

TEST(KvCache, Float32StorageKeepsValuesExactly) {
  KvCache kv({{1, 4, 0}}, 10, 4, /*f32=*/true);
  ASSERT_TRUE(kv.add_sequence(1).ok());
  ASSERT_TRUE(kv.reserve(1, 3).ok());
  const float k[4] = {1.0f / 3, -2.5e-5f, 7e5f, 0.1f}, v[4] = {3, 2, 1, 1e-8f};
  kv.store(1, 0, 2, k, v);
  const float* kc = static_cast<const float*>(kv.k_row(1, 0, 2));
  const float* vc = static_cast<const float*>(kv.v_row(1, 0, 2));
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(kc[i], k[i]);
    EXPECT_EQ(vc[i], v[i]);
  }
  EXPECT_EQ(kv.bytes(), size_t(2 * 16 * 4 * 4));  // one 16-position block (context 10)
}

}  // namespace g4

namespace g4 {

// q8_0 storage: 34 bytes per 32 values; attention over it stays within quantisation noise
// of the same attention over f32 K/V.
TEST(KvCache, Q8_0StorageAndAttention) {
  const int H = 4, Hkv = 2, hd = 64;
  const int64_t n = 200;
  KvCacheOptions o;
  o.n_ctx = 256;
  o.max_chunk = 256;
  o.block_tokens = 64;
  o.type = KvCacheType::kQ8_0;
  KvCache q8({{Hkv, hd, 0}, {Hkv, hd, 32}}, o);
  o.type = KvCacheType::kF32;
  KvCache f32({{Hkv, hd, 0}, {Hkv, hd, 32}}, o);
  EXPECT_EQ(q8.block_bytes(), size_t(2 * 64 * (Hkv * hd / 32) * 34));
  for (KvCache* kv : {&q8, &f32}) {
    ASSERT_TRUE(kv->add_sequence(0).ok());
    ASSERT_TRUE(kv->reserve(0, n).ok());
  }
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  std::vector<float> k(size_t(Hkv) * hd), v(size_t(Hkv) * hd);
  for (int64_t p = 0; p < n; ++p) {
    for (int l = 0; l < 2; ++l) {
      for (float& x : k) x = nd(rng);
      for (float& x : v) x = nd(rng);
      q8.store(0, l, p, k.data(), v.data());
      f32.store(0, l, p, k.data(), v.data());
    }
  }
  std::vector<float> q(size_t(H) * hd);
  for (float& x : q) x = 0.2f * nd(rng);
  for (int l = 0; l < 2; ++l) {
    std::vector<float> a(size_t(H) * hd), b(size_t(H) * hd);
    AttentionArgs args{H, Hkv, hd, q8.capacity(l), l == 1 ? 32 : 0, 0.f, false};
    std::vector<float> scores(attention_scratch_floats(args, n));
    const KvView wq = q8.view(0, l), wf = f32.view(0, l);
    AttentionArgs aq = args, af = args;
    aq.kv_q8 = true;
    af.kv_f32 = true;
    aq.blocks = wq.blocks, aq.block_shift = wq.block_shift;
    af.blocks = wf.blocks, af.block_shift = wf.block_shift;
    attend_group(aq, q.data(), wq.k, wq.v, n - 1, 0, H, a.data(), scores.data());
    attend_group(af, q.data(), wf.k, wf.v, n - 1, 0, H, b.data(), scores.data());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 0.02f) << l << " " << i;
  }
}

}  // namespace g4
