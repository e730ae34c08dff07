// Gemma 3 hyperparameters read from GGUF metadata agree with the known presets of every size
// (gemma-architecture.md §1.1), including 4B+ linear RoPE scaling and the 27B query scale.
#include <gtest/gtest.h>

#include <cmath>

#include "gguf_builder.h"
#include "io/gguf.h"
#include "model/config.h"

namespace g4 {

// A metadata-only gemma3 file shaped like `p`, with a tiny F32 embedding (vocab 8).
static std::vector<uint8_t> gemma3_file(const ModelConfig& p) {
  test::GgufBuilder g;
  const bool scaled = p.rope_scale_global != 1.f;
  g.header(3, 1, 12 + (scaled ? 2 : 0));
  g.kv_str("general.architecture", "gemma3");
  g.kv_str("general.name", p.name);
  g.kv_u32("gemma3.block_count", uint32_t(p.n_layers));
  g.kv_u32("gemma3.embedding_length", uint32_t(p.model_dim));
  g.kv_u32("gemma3.feed_forward_length", uint32_t(p.ff_dim));
  g.kv_u32("gemma3.attention.head_count", uint32_t(p.n_heads));
  g.kv_u32("gemma3.attention.head_count_kv", uint32_t(p.n_kv_heads));
  g.kv_u32("gemma3.attention.key_length", uint32_t(p.head_dim));
  g.kv_u32("gemma3.attention.value_length", uint32_t(p.head_dim));
  g.kv_u32("gemma3.attention.sliding_window", uint32_t(p.window));
  g.kv_u32("gemma3.context_length", uint32_t(p.n_ctx_train));
  g.kv_f32("gemma3.rope.freq_base", 1e6f);
  if (scaled) {
    g.kv_str("gemma3.rope.scaling.type", "linear");
    g.kv_f32("gemma3.rope.scaling.factor", p.rope_scale_global);
  }
  g.tensor("token_embd.weight", {p.model_dim, 8}, 0, 0);
  g.pad(32);
  g.bytes(size_t(p.model_dim) * 8 * 4);
  return g.b;
}

TEST(Config, EveryGemma3SizeMatchesItsPreset) {
  for (const char* size : {"270m", "1b", "4b", "12b", "27b"}) {
    auto preset = gemma3_preset(size);
    ASSERT_TRUE(preset.ok());
    const ModelConfig& p = preset.value();
    const auto bytes = gemma3_file(p);
    auto f = GgufFile::parse(bytes.data(), bytes.size());
    ASSERT_TRUE(f.ok()) << f.error();
    auto c = config_from_gguf(*f.value());
    ASSERT_TRUE(c.ok()) << c.error();
    const ModelConfig& m = c.value();
    EXPECT_EQ(m.n_layers, p.n_layers) << size;
    EXPECT_EQ(m.head_dim, p.head_dim) << size;
    EXPECT_EQ(m.window, p.window) << size;
    EXPECT_EQ(m.rope_scale_global, p.rope_scale_global) << size;
    EXPECT_FLOAT_EQ(m.query_scale, p.query_scale) << size;
    EXPECT_EQ(m.layer_sliding, p.layer_sliding) << size;
    EXPECT_EQ(m.rope_theta_local, 1e4f) << size;
  }
  // Spot values from the spec: 27B scales queries by 168^-0.5, global layers are 5, 11, 17...
  const ModelConfig c27 = gemma3_preset("27b").value();
  EXPECT_FLOAT_EQ(c27.query_scale, 1.f / std::sqrt(168.f));
  EXPECT_FALSE(c27.layer_sliding[5]);
  EXPECT_TRUE(c27.layer_sliding[6]);
  EXPECT_TRUE(c27.layer_sliding[61]);
  EXPECT_FLOAT_EQ(gemma3_preset("4b").value().query_scale, 1.f / 16.f);
  EXPECT_EQ(c27.embed_scale(EmbedScale::kBf16Rounded), 73.5f);
}

TEST(Config, RejectsInconsistentFiles) {
  ModelConfig p = gemma3_preset("270m").value();
  p.n_kv_heads = 3;  // 4 heads not divisible by 3
  const auto bytes = gemma3_file(p);
  auto f = GgufFile::parse(bytes.data(), bytes.size());
  ASSERT_TRUE(f.ok());
  EXPECT_FALSE(config_from_gguf(*f.value()).ok());
}

}  // namespace g4
