// `g4 plan`'s arithmetic: KV bytes per layer type on hand-checkable geometries (and against
// the KvCache the runtime builds), size strings, the fit search, preset shapes, and the
// ModelConfig -> KV geometry mapping against loaded tiny models.
#include <gtest/gtest.h>

#include "g4/engine.h"
#include "io/gguf.h"
#include "model/memory_estimate.h"
#include "runtime/memory_plan.h"

namespace g4 {

TEST(MemoryPlan, RowBytesPerType) {
  EXPECT_EQ(kv_row_bytes(KvType::kF32, 256), 1024);
  EXPECT_EQ(kv_row_bytes(KvType::kF16, 256), 512);
  EXPECT_EQ(kv_row_bytes(KvType::kBf16, 256), 512);
  EXPECT_EQ(kv_row_bytes(KvType::kQ8_0, 256), 8 * 34);
  EXPECT_EQ(kv_row_bytes(KvType::kQ4_0, 256), 8 * 18);
  EXPECT_EQ(kv_row_bytes(KvType::kQ8_0, 40), 2 * 34);  // partial block rounds up
  EXPECT_EQ(parse_kv_type("Q8_0").value(), KvType::kQ8_0);
  EXPECT_FALSE(parse_kv_type("q5_k").ok());
}

// One global layer (2 heads x 64), one sliding (1 x 32, window 8), one sharing layer 0.
std::vector<KvLayerGeometry> small_geometry() {
  return {{2, 64, 0, -1}, {1, 32, 8, -1}, {2, 64, 0, 0}};
}

TEST(MemoryPlan, KvByHand) {
  KvPlanOptions o;
  o.n_ctx = 100;
  o.parallel = 3;
  o.max_chunk = 4;
  o.block_tokens = 16;
  const KvPlan p = plan_kv(small_geometry(), o);
  ASSERT_EQ(p.types.size(), 3u);
  const KvTypePlan &g = p.types[0], &s = p.types[1], &sh = p.types[2];
  EXPECT_EQ(p.block_tokens, 16);
  EXPECT_EQ(p.blocks_per_seq, 7);        // ceil(100 / 16)
  EXPECT_EQ(g.bytes_per_token, 512);     // 2 (K, V) x 2 heads x 64 x 2 bytes
  EXPECT_EQ(p.block_bytes, 16 * 512);    // one block over the one global layer
  EXPECT_EQ(g.bytes_per_seq, 7 * 8192);  // whole blocks
  EXPECT_EQ(g.bytes, 3 * 7 * 8192);
  EXPECT_EQ(s.slots_per_seq, 12);  // window 8 + chunk 4
  EXPECT_EQ(s.bytes_per_token, 2 * 32 * 2);
  EXPECT_EQ(s.bytes_per_seq, 12 * 128);
  EXPECT_EQ(sh.layers, 1);
  EXPECT_EQ(sh.bytes, 0);
  EXPECT_EQ(p.bytes, 3 * (7 * 8192 + 12 * 128));

  o.ring_slack = 10;  // the server's --swa-slack widens the rings
  EXPECT_EQ(plan_kv(small_geometry(), o).types[1].slots_per_seq, 18);
  o.n_ctx = 10;  // rings never exceed the context; one block covers it
  const KvPlan q = plan_kv(small_geometry(), o);
  EXPECT_EQ(q.types[1].slots_per_seq, 10);
  EXPECT_EQ(q.blocks_per_seq, 1);
  EXPECT_EQ(q.block_tokens, 16);
  o.n_ctx = 4;
  EXPECT_EQ(plan_kv(small_geometry(), o).block_tokens, 4);
  EXPECT_EQ(kv_block_size(200, 100000), 256);  // powers of two

  o = KvPlanOptions();
  o.n_ctx = 64;
  o.block_tokens = 16;
  o.global_type = KvType::kQ8_0;
  o.sliding_type = KvType::kQ4_0;
  const KvPlan r = plan_kv(small_geometry(), o);
  EXPECT_EQ(r.types[0].bytes_per_token, 2 * 4 * 34);  // 128 values = 4 q8_0 blocks, K and V
  EXPECT_EQ(r.types[1].bytes_per_token, 2 * 18);      // 32 values = 1 q4_0 block
  // + a key summary per page (8 positions by default: 2 per 16-position block): 2 heads x
  // (min, max) x 64 f16
  o.sparse = true;
  EXPECT_EQ(plan_kv(small_geometry(), o).block_bytes, r.block_bytes + 2 * (2 * 2 * 64 * 2));
  o.page_tokens = 16;
  EXPECT_EQ(plan_kv(small_geometry(), o).block_bytes, r.block_bytes + 2 * 2 * 64 * 2);
}

// The plan's per-block and per-ring bytes are the runtime cache's.
TEST(MemoryPlan, MatchesKvCache) {
  KvCacheOptions co;
  co.n_ctx = 100;
  co.max_chunk = 4;
  co.ring_slack = 6;
  co.block_tokens = 16;
  KvCache kv(small_geometry(), co);
  KvPlanOptions o;
  o.n_ctx = 100;
  o.max_chunk = 4;
  o.ring_slack = 6;
  o.block_tokens = 16;
  const KvPlan p = plan_kv(small_geometry(), o);
  EXPECT_EQ(int64_t(kv.block_bytes()), p.block_bytes);
  EXPECT_EQ(int64_t(kv.ring_bytes_per_seq()), p.types[1].bytes_per_seq);
  EXPECT_EQ(kv.block_tokens(), p.block_tokens);
  o.global_type = o.sliding_type = KvType::kF32;
  co.f32 = true;
  KvCache kf(small_geometry(), co);
  const KvPlan pf = plan_kv(small_geometry(), o);
  EXPECT_EQ(int64_t(kf.block_bytes()), pf.block_bytes);
  EXPECT_EQ(int64_t(kf.ring_bytes_per_seq()), pf.types[1].bytes_per_seq);
  co.sparse.enabled = true;  // key summaries beside each block
  o.sparse = true;
  KvCache ks(small_geometry(), co);
  EXPECT_EQ(int64_t(ks.block_bytes()), plan_kv(small_geometry(), o).block_bytes);
  co.sparse.page_tokens = o.page_tokens = 4;  // 4 pages per 16-position block
  KvCache kp(small_geometry(), co);
  EXPECT_EQ(int64_t(kp.block_bytes()), plan_kv(small_geometry(), o).block_bytes);
}

TEST(MemoryPlan, ByteSizes) {
  EXPECT_EQ(parse_byte_size("16GiB").value(), int64_t(16) << 30);
  EXPECT_EQ(parse_byte_size("512MiB").value(), int64_t(512) << 20);
  EXPECT_EQ(parse_byte_size("512mib").value(), int64_t(512) << 20);
  EXPECT_EQ(parse_byte_size("1.5GiB").value(), int64_t(3) << 29);
  EXPECT_EQ(parse_byte_size("2G").value(), 2000000000);
  EXPECT_EQ(parse_byte_size("2GB").value(), 2000000000);
  EXPECT_EQ(parse_byte_size("64k").value(), 64000);
  EXPECT_EQ(parse_byte_size("123456").value(), 123456);
  EXPECT_EQ(parse_byte_size("100B").value(), 100);
  for (const char* bad : {"", "GiB", "-5GiB", "16XB", "0", "1.2.3G", "16 GiBs", "1e9"})
    EXPECT_FALSE(parse_byte_size(bad).ok()) << bad;
  EXPECT_EQ(format_bytes(1023), "1023 B");
  EXPECT_EQ(format_bytes(1536), "1.50 KiB");
  EXPECT_EQ(format_bytes(int64_t(3) << 30), "3.00 GiB");
}

TEST(MemoryPlan, LargestFitting) {
  EXPECT_EQ(largest_fitting(1, 100, [](int64_t x) { return x <= 37; }), 37);
  EXPECT_EQ(largest_fitting(1, 100, [](int64_t) { return true; }), 100);
  EXPECT_EQ(largest_fitting(1, 100, [](int64_t) { return false; }), 0);
  EXPECT_EQ(largest_fitting(16, 16, [](int64_t x) { return x == 16; }), 16);
}

TEST(MemoryPlan, PresetKvLayerTypes) {
  KvPlanOptions o;
  o.n_ctx = 8192;
  // Gemma 3 270M: 3 global layers x 2 x 256 x 2 bytes = 3 KiB per token; 15 rings of
  // window 512 + chunk 512.
  auto g3 = footprint_from_preset("gemma3-270m", "q4_k_m");
  ASSERT_TRUE(g3.ok()) << g3.error();
  KvPlan p = plan_kv(kv_geometry_for(g3.value().config), o);
  EXPECT_EQ(p.types[0].layers, 3);
  EXPECT_EQ(p.types[0].bytes_per_token, 3072);
  EXPECT_EQ(p.types[0].bytes_per_seq, 3072 * 8192);
  EXPECT_EQ(p.types[1].layers, 15);
  EXPECT_EQ(p.types[1].bytes_per_seq, 15 * 1024 * 1024);
  EXPECT_EQ(p.types[2].layers, 0);
  // Gemma 4 E2B: layers 15-34 share their donors' caches and own nothing; 12 sliding and 3
  // global layers own theirs (spec §1.3).
  auto e2b = footprint_from_preset("gemma4-e2b", "q4_k_m");
  ASSERT_TRUE(e2b.ok()) << e2b.error();
  p = plan_kv(kv_geometry_for(e2b.value().config), o);
  EXPECT_EQ(p.types[0].layers, 3);
  EXPECT_EQ(p.types[1].layers, 12);
  EXPECT_EQ(p.types[2].layers, 20);
  EXPECT_EQ(p.types[2].bytes, 0);
  EXPECT_EQ(p.types[0].bytes_per_token, 3 * 2 * 512 * 2);  // 1 KV head x 512
  auto e4b = footprint_from_preset("gemma4-e4b", "q4_k_m");
  p = plan_kv(kv_geometry_for(e4b.value().config), o);
  EXPECT_EQ(p.types[0].layers, 4);
  EXPECT_EQ(p.types[1].layers, 20);
  EXPECT_EQ(p.types[2].layers, 18);
  // 31B: 10 global layers with 4 KV heads of 512; 50 sliding with 16 of 256.
  auto b31 = footprint_from_preset("gemma4-31b", "q4_k_m");
  p = plan_kv(kv_geometry_for(b31.value().config), o);
  EXPECT_EQ(p.types[0].layers, 10);
  EXPECT_EQ(p.types[0].bytes_per_token, 10 * 2 * 4 * 512 * 2);
  EXPECT_EQ(p.types[1].layers, 50);
  // Halving the element size halves the KV (q8_0 is 34/64 of f16).
  o.global_type = o.sliding_type = KvType::kQ8_0;
  EXPECT_EQ(plan_kv(kv_geometry_for(b31.value().config), o).types[0].bytes_per_token,
            10 * 2 * 4 * 512 * 34 / 32);
}

TEST(MemoryPlan, PresetParameterCounts) {
  struct Want {
    const char* name;
    double lo, hi;  // billions of parameters
  };
  // Published sizes: Gemma 3 270M / 27B, Gemma 4 E2B (5.1B with its vision and audio
  // towers; the text model is 4.6B with the PLE table), 31B, 26B-A4B (25.2B); the brief's
  // shapes by construction.
  for (const Want& w :
       {Want{"gemma3-270m", 0.26, 0.28}, Want{"gemma3-27b", 26.5, 28}, Want{"gemma4-e2b", 4.5, 4.8},
        Want{"gemma4-31b", 30, 32}, Want{"gemma4-26b-a4b", 24.5, 26.5}, Want{"brief-2b", 2.5, 2.8},
        Want{"brief-9b", 9, 9.6}, Want{"brief-27b", 26.5, 28}, Want{"brief-270b", 260, 280}}) {
    auto m = footprint_from_preset(w.name, "bf16");
    ASSERT_TRUE(m.ok()) << w.name << ": " << m.error();
    const double b = double(m.value().n_params) / 1e9;
    EXPECT_GE(b, w.lo) << w.name;
    EXPECT_LE(b, w.hi) << w.name;
    // bf16: about 2 bytes per parameter; q4_k_m: about 4.5-6.6 bits.
    EXPECT_NEAR(double(m.value().weight_bytes) / double(m.value().n_params), 2.0, 0.01);
    auto q = footprint_from_preset(w.name, "q4_k_m");
    ASSERT_TRUE(q.ok());
    const double bits = 8.0 * double(q.value().weight_bytes) / double(q.value().n_params);
    EXPECT_GT(bits, 4.5) << w.name;
    EXPECT_LT(bits, 7.5) << w.name;  // 270M: width 640 forces Q5_0 / Q8_0 fallbacks
  }
  // Tensor data bytes of llama.cpp's Q4_K_M files: the default model, and the shape models
  // of bench/shape_models.py (llama-quantize Q4_K_M).
  for (const auto& [name, bytes] : {std::pair<const char*, int64_t>{"gemma3-270m", 246587904},
                                    {"gemma3-1b", 799525120},
                                    {"gemma3-4b", 2483352832},
                                    {"gemma4-e2b", 3400303756}}) {
    EXPECT_EQ(footprint_from_preset(name, "q4_k_m").value().weight_bytes, bytes) << name;
  }
  EXPECT_FALSE(footprint_from_preset("gemma4-7b", "q4_k_m").ok());
  EXPECT_FALSE(footprint_from_preset("brief-2b", "q3_k").ok());
}

// kv_geometry_for (used for files and presets without loading them) is what the loaded
// model reports.
TEST(MemoryPlan, GeometryMatchesLoadedModels) {
  for (const char* path :
       {"/tests/golden/tiny/tiny_4b_like.gguf", "/tests/golden/tiny_gemma4/tiny_e2b_like.gguf",
        "/tests/golden/tiny_gemma4/tiny_31b_like.gguf"}) {
    EngineOptions eo;
    eo.model_path = std::string(G4_SOURCE_DIR) + path;
    eo.n_threads = 1;
    auto e = Engine::load(eo);
    ASSERT_TRUE(e.ok()) << e.error();
    const auto want = e.value()->model().kv_geometry();
    const auto got = kv_geometry_for(e.value()->model().config());
    ASSERT_EQ(got.size(), want.size()) << path;
    for (size_t l = 0; l < want.size(); ++l) {
      EXPECT_EQ(got[l].n_kv_heads, want[l].n_kv_heads) << path << " layer " << l;
      EXPECT_EQ(got[l].head_dim, want[l].head_dim) << path << " layer " << l;
      EXPECT_EQ(got[l].window, want[l].window) << path << " layer " << l;
      EXPECT_EQ(got[l].donor, want[l].donor) << path << " layer " << l;
    }
    auto fp = footprint_from_file(eo.model_path);
    ASSERT_TRUE(fp.ok()) << fp.error();
    auto f = GgufFile::open(eo.model_path);
    int64_t bytes = 0;
    for (const GgufTensor& t : f.value()->tensors()) bytes += int64_t(t.nbytes);
    EXPECT_EQ(fp.value().weight_bytes, bytes);
    EXPECT_GT(fp.value().resident_bytes, 0);
  }
}

TEST(MemoryPlan, TotalsGrowWithContextAndParallel) {
  auto m = footprint_from_preset("gemma4-31b", "q4_k_m");
  ASSERT_TRUE(m.ok());
  MemoryPlanOptions o;
  o.kv.n_ctx = 4096;
  const MemoryPlan a = plan_memory(m.value(), o);
  EXPECT_EQ(a.total, a.kv.bytes + a.act.total + a.weights + a.overhead);
  o.kv.n_ctx = 8192;
  const MemoryPlan b = plan_memory(m.value(), o);
  EXPECT_GT(b.total, a.total);
  // Global KV doubles with the context; sliding rings stay (window 1024 + chunk 512).
  EXPECT_EQ(b.kv.types[0].bytes, 2 * a.kv.types[0].bytes);
  EXPECT_EQ(b.kv.types[1].bytes, a.kv.types[1].bytes);
  o.kv.parallel = 4;
  EXPECT_EQ(plan_memory(m.value(), o).kv.bytes, 4 * b.kv.bytes);
  EXPECT_EQ(plan_step_tokens(512, 1), 512);
  EXPECT_EQ(plan_step_tokens(512, 8), 512);
  EXPECT_EQ(plan_step_tokens(512, 600), 615);
}

}  // namespace g4
