// Gemma 4 hyperparameters: metadata written the way llama.cpp's converter writes it (spec §3.2:
// per-layer arrays for FFN width and KV heads, a bool sliding-window pattern) reads back as the
// spec's presets, with KV donors from the HF rule (§1.3: E2B shared layers read 13 / 14, E4B
// read 22 / 23); inconsistent files are refused with a message.
#include <gtest/gtest.h>

#include <functional>

#include "gguf_builder.h"
#include "io/gguf.h"
#include "model/config.h"

namespace g4 {

namespace {

void kv_arr_bool(test::GgufBuilder& g, const std::string& k, const std::vector<bool>& v) {
  g.str(k);
  g.put<uint32_t>(9);
  g.put<uint32_t>(7);
  g.put<uint64_t>(v.size());
  for (bool x : v) g.put<uint8_t>(x ? 1 : 0);
}

std::vector<int32_t> i32(const std::vector<int>& v) {
  return std::vector<int32_t>(v.begin(), v.end());
}

// A metadata-only gemma4 file shaped like `p` (tiny F32 embedding, vocab 8). `edit` may change
// the config before writing, to produce inconsistent files.
std::vector<uint8_t> gemma4_file(ModelConfig p, const std::function<void(ModelConfig&)>& edit = {},
                                 bool with_pattern = true) {
  if (edit) edit(p);
  const bool moe = p.n_experts > 0;
  test::GgufBuilder g;
  g.header(3, 1, 18 + (moe ? 3 : 0) - (with_pattern ? 0 : 1));
  const std::string a = "gemma4.";
  g.kv_str("general.architecture", "gemma4");
  g.kv_str("general.name", p.name);
  g.kv_u32(a + "block_count", uint32_t(p.n_layers));
  g.kv_u32(a + "embedding_length", uint32_t(p.model_dim));
  g.kv_arr_i32(a + "feed_forward_length", i32(p.layer_ff_dim));
  g.kv_u32(a + "attention.head_count", uint32_t(p.n_heads));
  g.kv_arr_i32(a + "attention.head_count_kv", i32(p.layer_kv_heads));
  g.kv_u32(a + "attention.key_length", uint32_t(p.head_dim));
  g.kv_u32(a + "attention.value_length", uint32_t(p.head_dim));
  g.kv_u32(a + "attention.key_length_swa", uint32_t(p.head_dim_swa));
  g.kv_u32(a + "attention.value_length_swa", uint32_t(p.head_dim_swa));
  g.kv_u32(a + "attention.sliding_window", uint32_t(p.window));
  if (with_pattern) kv_arr_bool(g, a + "attention.sliding_window_pattern", p.layer_sliding);
  g.kv_u32(a + "attention.shared_kv_layers", uint32_t(p.n_kv_shared));
  g.kv_u32(a + "embedding_length_per_layer_input", uint32_t(p.ple_dim));
  g.kv_u32(a + "context_length", uint32_t(p.n_ctx_train));
  g.kv_u32(a + "rope.dimension_count", uint32_t(p.rope_dims_global));
  g.kv_f32(a + "final_logit_softcapping", p.final_softcap);
  if (moe) {
    g.kv_u32(a + "expert_count", uint32_t(p.n_experts));
    g.kv_u32(a + "expert_used_count", uint32_t(p.n_experts_used));
    g.kv_u32(a + "expert_feed_forward_length", uint32_t(p.expert_ff_dim));
  }
  g.tensor("token_embd.weight", {p.model_dim, 8}, 0, 0);
  g.pad(32);
  g.bytes(size_t(p.model_dim) * 8 * 4);
  return g.b;
}

Result<ModelConfig> read(const std::vector<uint8_t>& bytes) {
  auto f = GgufFile::parse(bytes.data(), bytes.size());
  if (!f.ok()) return f.status();
  return config_from_gguf(*f.value());
}

}  // namespace

TEST(Gemma4Config, EveryPresetRoundTripsThroughGgufMetadata) {
  for (const char* size : {"e2b", "e4b", "31b", "26b-a4b"}) {
    const ModelConfig p = gemma4_preset(size).value();
    auto c = read(gemma4_file(p));
    ASSERT_TRUE(c.ok()) << size << ": " << c.error();
    const ModelConfig& m = c.value();
    EXPECT_EQ(m.arch, "gemma4");
    EXPECT_EQ(m.layer_sliding, p.layer_sliding) << size;
    EXPECT_EQ(m.layer_head_dim, p.layer_head_dim) << size;
    EXPECT_EQ(m.layer_kv_heads, p.layer_kv_heads) << size;
    EXPECT_EQ(m.layer_ff_dim, p.layer_ff_dim) << size;
    EXPECT_EQ(m.kv_donor, p.kv_donor) << size;
    EXPECT_EQ(m.n_experts, p.n_experts) << size;
    EXPECT_EQ(m.query_scale, 1.f) << size;
    EXPECT_EQ(m.final_softcap, 30.f) << size;
  }
}

TEST(Gemma4Config, PresetsMatchTheSpecTables) {
  const ModelConfig e2b = gemma4_preset("e2b").value();
  // Global layers 4, 9, ..., 34; KV donors 13 (sliding) and 14 (global); 12288-wide MLP on 15+.
  for (int l = 0; l < 35; ++l) {
    EXPECT_EQ(e2b.layer_sliding[size_t(l)], (l + 1) % 5 != 0) << l;
    EXPECT_EQ(e2b.kv_donor[size_t(l)], l < 15 ? -1 : e2b.layer_sliding[size_t(l)] ? 13 : 14) << l;
    EXPECT_EQ(e2b.layer_ff_dim[size_t(l)], l < 15 ? 6144 : 12288) << l;
  }
  const ModelConfig e4b = gemma4_preset("e4b").value();
  EXPECT_EQ(e4b.kv_donor[24], 22);
  EXPECT_EQ(e4b.kv_donor[41], 23);
  EXPECT_EQ(e4b.kv_donor[23], -1);
  const ModelConfig b31 = gemma4_preset("31b").value();
  EXPECT_EQ(b31.layer_kv_heads[5], 4);
  EXPECT_EQ(b31.layer_kv_heads[6], 16);
  EXPECT_EQ(b31.layer_head_dim[59], 512);
  const ModelConfig moe = gemma4_preset("26b-a4b").value();
  EXPECT_EQ(moe.n_experts, 128);
  EXPECT_EQ(moe.n_experts_used, 8);
  EXPECT_EQ(moe.expert_ff_dim, 704);
  EXPECT_EQ(moe.embed_scale(EmbedScale::kBf16Rounded), 53.0f);
  // The brief's bench shape: 8 experts, top-2, SwiGLU, on the 26B-A4B skeleton.
  Gemma4PresetOverrides o;
  o.n_experts = 8;
  o.n_experts_used = 2;
  o.swiglu = 1;
  o.window = 256;
  o.n_ctx = 8192;
  const ModelConfig b = gemma4_preset("26b-a4b", o).value();
  EXPECT_EQ(b.n_experts, 8);
  EXPECT_EQ(b.n_experts_used, 2);
  EXPECT_TRUE(b.expert_swiglu);
  EXPECT_EQ(b.window, 256);
  EXPECT_EQ(b.n_ctx_train, 8192);
  o.n_experts_used = 9;
  EXPECT_FALSE(gemma4_preset("26b-a4b", o).ok());
  EXPECT_FALSE(gemma4_preset("7b").ok());
}

TEST(Gemma4Config, RejectsInconsistentFiles) {
  const ModelConfig p = gemma4_preset("e2b").value();
  auto expect_error = [&](const std::vector<uint8_t>& bytes, const std::string& needle) {
    auto c = read(bytes);
    ASSERT_FALSE(c.ok()) << needle;
    EXPECT_NE(c.error().find(needle), std::string::npos) << c.error();
  };
  expect_error(gemma4_file(p, {}, false), "sliding_window_pattern");
  expect_error(gemma4_file(p, [](ModelConfig& c) { c.layer_kv_heads.pop_back(); }),
               "one per layer");
  expect_error(gemma4_file(p, [](ModelConfig& c) { c.layer_kv_heads[3] = 3; }), "multiple");
  expect_error(gemma4_file(p, [](ModelConfig& c) { c.n_kv_shared = 35; }), "shared_kv_layers");
  // Sharing so many layers that no global layer is left to own a cache.
  expect_error(gemma4_file(p, [](ModelConfig& c) { c.n_kv_shared = 31; }), "no earlier layer");
  expect_error(gemma4_file(p, [](ModelConfig& c) { c.layer_ff_dim[0] = 0; }), "outside");
  expect_error(
      gemma4_file(gemma4_preset("26b-a4b").value(), [](ModelConfig& c) { c.n_experts_used = 200; }),
      "MoE metadata inconsistent");
  expect_error(gemma4_file(p, [](ModelConfig& c) { c.rope_dims_global = 1000; }), "rope dimension");
}

}  // namespace g4
