// Gemma 3 hyperparameters read from GGUF metadata agree with the known presets of every size
// (gemma-architecture.md §1.1), including 4B+ linear RoPE scaling and the 27B query scale;
// Gemma 2 metadata as llama.cpp's converter writes it, and bad gemma2 values.
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

// A gemma2 file with the keys llama.cpp's convert_hf_to_gguf.py (Gemma2Model) writes, plus
// `extra` float keys (gemma2.<name>) and an optional rope scaling type.
struct Gemma2Shape {
  int L, d, ff, H, Hkv, hd;
};
static std::vector<uint8_t> gemma2_file(const Gemma2Shape& s,
                                        const std::vector<std::pair<std::string, float>>& extra,
                                        const std::string& rope_scaling = "") {
  // Extra keys replace the converter's soft-caps (a GGUF key appears once).
  std::vector<std::pair<std::string, float>> f = {{"attn_logit_softcapping", 50.f},
                                                  {"final_logit_softcapping", 30.f}};
  for (const auto& kv : extra) {
    std::erase_if(f, [&](const auto& x) { return x.first == kv.first; });
    f.push_back(kv);
  }
  test::GgufBuilder g;
  g.header(3, 1, 12 + int64_t(f.size()) + (rope_scaling.empty() ? 0 : 1));
  g.kv_str("general.architecture", "gemma2");
  g.kv_str("general.name", "gemma-2");
  g.kv_u32("gemma2.context_length", 8192);
  g.kv_u32("gemma2.embedding_length", uint32_t(s.d));
  g.kv_u32("gemma2.block_count", uint32_t(s.L));
  g.kv_u32("gemma2.feed_forward_length", uint32_t(s.ff));
  g.kv_u32("gemma2.attention.head_count", uint32_t(s.H));
  g.kv_u32("gemma2.attention.head_count_kv", uint32_t(s.Hkv));
  g.kv_f32("gemma2.attention.layer_norm_rms_epsilon", 1e-6f);
  g.kv_u32("gemma2.attention.key_length", uint32_t(s.hd));
  g.kv_u32("gemma2.attention.value_length", uint32_t(s.hd));
  g.kv_u32("gemma2.attention.sliding_window", 4096);
  for (const auto& [k, v] : f) g.kv_f32("gemma2." + k, v);
  if (!rope_scaling.empty()) g.kv_str("gemma2.rope.scaling.type", rope_scaling);
  g.tensor("token_embd.weight", {s.d, 8}, 0, 0);
  g.pad(32);
  g.bytes(size_t(s.d) * 8 * 4);
  return g.b;
}

static Result<ModelConfig> gemma2_config(const std::vector<uint8_t>& bytes) {
  auto f = GgufFile::parse(bytes.data(), bytes.size());
  if (!f.ok()) return f.status();
  return config_from_gguf(*f.value());
}

// Gemma 2 2B / 9B / 27B as llama.cpp's converter writes them: alternating sliding (even layers)
// and global layers, soft-caps 50 / 30, RoPE theta 10000 on both layer types, no QK-norm, and
// query_pre_attn_scalar 256 except 27B's 144 = d/H (llama.cpp keys it on the 46 layers).
TEST(Config, Gemma2SizesAsLlamaCppWritesThem) {
  const struct {
    Gemma2Shape s;
    float qpas;
  } sizes[] = {{{26, 2304, 9216, 8, 4, 256}, 256.f},
               {{42, 3584, 14336, 16, 8, 256}, 256.f},
               {{46, 4608, 36864, 32, 16, 128}, 144.f}};
  for (const auto& [s, qpas] : sizes) {
    auto c = gemma2_config(gemma2_file(s, {}));
    ASSERT_TRUE(c.ok()) << c.error();
    const ModelConfig& m = c.value();
    EXPECT_EQ(m.arch, "gemma2");
    EXPECT_FALSE(m.qk_norm);
    EXPECT_EQ(m.attn_softcap, 50.f);
    EXPECT_EQ(m.final_softcap, 30.f);
    EXPECT_EQ(m.rope_theta_global, 1e4f);
    EXPECT_EQ(m.rope_theta_local, 1e4f);
    EXPECT_FLOAT_EQ(m.query_scale, 1.f / std::sqrt(qpas)) << s.L;
    ASSERT_EQ(m.layer_sliding.size(), size_t(s.L));
    for (int l = 0; l < s.L; ++l) EXPECT_EQ(m.layer_sliding[size_t(l)], l % 2 == 0) << l;
    EXPECT_NE(m.summary().find("gemma2"), std::string::npos);
  }
  // Keys g4 writes when a checkpoint differs from what llama.cpp derives.
  auto c = gemma2_config(gemma2_file(
      {4, 32, 48, 4, 2, 16},
      {{"attention.scale", 0.25f}, {"rope.freq_base", 5000.f}, {"final_logit_softcapping", 0.f}}));
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c.value().query_scale, 0.25f);
  EXPECT_EQ(c.value().rope_theta_local, 5000.f);
  EXPECT_EQ(c.value().final_softcap, 0.f);  // none
}

TEST(Config, Gemma2BadMetadataIsNamed) {
  const Gemma2Shape s{4, 32, 48, 4, 2, 16};
  const auto err = [&](const std::vector<std::pair<std::string, float>>& extra,
                       const std::string& rope = "") {
    auto c = gemma2_config(gemma2_file(s, extra, rope));
    return c.ok() ? std::string() : c.error();
  };
  EXPECT_NE(err({{"attn_logit_softcapping", -1.f}}).find("gemma2.attn_logit_softcapping"),
            std::string::npos);
  EXPECT_NE(err({{"final_logit_softcapping", NAN}}).find("gemma2.final_logit_softcapping"),
            std::string::npos);
  EXPECT_NE(err({{"attention.scale", 0.f}}).find("gemma2.attention.scale"), std::string::npos);
  EXPECT_NE(err({{"rope.freq_base", -5.f}}).find("rope.freq_base"), std::string::npos);
  EXPECT_NE(err({}, "linear").find("not supported for gemma2"), std::string::npos);
  EXPECT_EQ(err({}), "");
}

}  // namespace g4
