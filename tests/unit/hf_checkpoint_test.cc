// Hugging Face checkpoint directories (scripts/gen_tiny_hf.py): logits vs transformers float32,
// bit-identical to the GGUF form of the same weights, --dtype conversion, and bad checkpoints
// (truncated safetensors, missing tensor, unknown tensor, dtype, shape mismatch with config.json,
// unsupported configs).
#include "io/hf_checkpoint.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "exact_options.h"
#include "g4/engine.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "kernels/quant.h"

namespace g4 {
namespace {

namespace fs = std::filesystem;
const std::string kDir = std::string(G4_SOURCE_DIR) + "/tests/golden/";

nlohmann::json expected(const std::string& sub) {
  std::ifstream in(kDir + "tiny_hf/" + sub + "/expected.json");
  EXPECT_TRUE(in.good()) << sub;
  return in.good() ? nlohmann::json::parse(in) : nlohmann::json();
}

// All-position logits of every prompt of `fx`.
std::vector<std::vector<float>> run(const EngineOptions& o, const nlohmann::json& fx) {
  auto e = Engine::load(o);
  EXPECT_TRUE(e.ok()) << e.error();
  std::vector<std::vector<float>> out;
  if (!e.ok()) return out;
  for (const auto& p : fx["prompts"]) {
    Session s(*e.value());
    auto lg = s.logits_all(p["ids"].get<std::vector<int32_t>>());
    EXPECT_TRUE(lg.ok()) << lg.error();
    out.push_back(lg.ok() ? lg.value() : std::vector<float>());
  }
  return out;
}

double max_diff(const std::vector<std::vector<float>>& got, const nlohmann::json& fx) {
  double m = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const auto& rows = fx["prompts"][i]["logits"];
    const size_t V = rows[0].size();
    EXPECT_EQ(got[i].size(), rows.size() * V);
    for (size_t t = 0; t < rows.size() && (t + 1) * V <= got[i].size(); ++t)
      for (size_t v = 0; v < V; ++v)
        m = std::max(m, std::fabs(double(got[i][t * V + v]) - rows[t][v].get<double>()));
  }
  return m;
}

// f32 weights, activations and K/V: only float32 summation order differs from transformers
// (relative 1e-6 per op through ~10 layers on logits of magnitude <= 30: well under 1e-3; the
// tiny Gemma 4 GGUF test uses the same bound). The GGUF form of the same weights must give
// bit-identical logits: the loader is only a different way to fill the same tensors.
struct Case {
  const char* dir;
  const char* gguf;
};
class TinyHf : public ::testing::TestWithParam<Case> {};

TEST_P(TinyHf, MatchesTransformersAndGguf) {
  const auto fx = expected(GetParam().dir);
  ASSERT_FALSE(fx.is_null());
  const auto hf = run(exact_options(kDir + "tiny_hf/" + GetParam().dir), fx);
  ASSERT_EQ(hf.size(), fx["prompts"].size());
  const double d = max_diff(hf, fx);
  std::printf("%s: max |g4 - transformers f32| = %.3g\n", GetParam().dir, d);
  EXPECT_LT(d, 1e-3);
  const auto gg = run(exact_options(kDir + GetParam().gguf), fx);
  ASSERT_EQ(gg.size(), hf.size());
  for (size_t i = 0; i < hf.size(); ++i) EXPECT_TRUE(hf[i] == gg[i]) << "prompt " << i;
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, TinyHf,
    ::testing::Values(Case{"gemma4_e2b_like", "tiny_gemma4/tiny_e2b_like.gguf"},
                      Case{"gemma3_4b_like", "tiny/tiny_4b_like.gguf"},
                      Case{"gemma4_31b_like", "tiny_gemma4/tiny_31b_like.gguf"},
                      Case{"gemma4_26b_like", "tiny_gemma4/tiny_26b_like.gguf"},
                      // Gemma 2 (scripts/gen_tiny_gemma2.py): GGUF twins in llama.cpp's layout.
                      Case{"gemma2_2b_like", "tiny_gemma2/gemma2_2b_like.gguf"},
                      Case{"gemma2_qpas", "tiny_gemma2/gemma2_qpas.gguf"}),
    [](const auto& info) { return std::string(info.param.dir); });

TEST(HfCheckpoint, MetadataAndConversions) {
  auto f = load_hf_checkpoint(kDir + "tiny_hf/gemma3_4b_like", {});
  ASSERT_TRUE(f.ok()) << f.error();
  auto g = GgufFile::open(kDir + "tiny/tiny_4b_like.gguf");
  ASSERT_TRUE(g.ok());
  // Same tensors, types, shapes and bytes as the gguf-py file (norms are 1 + w again).
  for (const GgufTensor& t : g.value()->tensors()) {
    const GgufTensor* h = f.value()->tensor(t.name);
    ASSERT_NE(h, nullptr) << t.name;
    EXPECT_EQ(h->type, t.type) << t.name;
    EXPECT_EQ(h->ne, t.ne) << t.name;
    ASSERT_EQ(h->nbytes, t.nbytes);
    EXPECT_EQ(std::memcmp(h->data, t.data, t.nbytes), 0) << t.name;
  }
  EXPECT_EQ(f.value()->tensors().size(), g.value()->tensors().size());
  EXPECT_EQ(f.value()->get_float("gemma3.rope.scaling.factor").value().value(), 8.0);
  // --dtype: matrices converted, 1-D tensors stay f32.
  for (const char* dt : {"f16", "bf16"}) {
    auto c = load_hf_checkpoint(kDir + "tiny_hf/gemma4_e2b_like", {dt});
    ASSERT_TRUE(c.ok()) << c.error();
    const DType want = std::string(dt) == "f16" ? DType::kF16 : DType::kBF16;
    EXPECT_EQ(c.value()->tensor("blk.0.attn_q.weight")->type, want);
    EXPECT_EQ(c.value()->tensor("per_layer_token_embd.weight")->type, want);
    EXPECT_EQ(c.value()->tensor("blk.0.attn_norm.weight")->type, DType::kF32);
    EXPECT_EQ(c.value()->tensor("rope_freqs.weight")->type, DType::kF32);
  }
  {
    // Q8_0 where rows are whole blocks (d = 32), f16 otherwise (ffn_down rows of 48).
    auto c = load_hf_checkpoint(kDir + "tiny_hf/gemma4_e2b_like", {"q8_0"});
    ASSERT_TRUE(c.ok()) << c.error();
    EXPECT_EQ(c.value()->tensor("blk.0.attn_q.weight")->type, DType::kQ8_0);
    EXPECT_EQ(c.value()->tensor("token_embd.weight")->type, DType::kQ8_0);
    EXPECT_EQ(c.value()->tensor("blk.0.ffn_down.weight")->type, DType::kF16);
    EXPECT_EQ(c.value()->tensor("blk.0.attn_norm.weight")->type, DType::kF32);
    // Each block dequantises to within half a step of the f32 weights: |x - q*fp16(d)| <=
    // d/2 + 127*|d - fp16(d)| with d = amax/127, i.e. amax * (0.5/127 + 2^-11) (plus slack).
    auto f32 = load_hf_checkpoint(kDir + "tiny_hf/gemma4_e2b_like", {"f32"});
    ASSERT_TRUE(f32.ok());
    const GgufTensor* q = c.value()->tensor("blk.0.attn_q.weight");
    const GgufTensor* x = f32.value()->tensor("blk.0.attn_q.weight");
    std::vector<float> deq(size_t(q->n_elements()));
    dequantize_row(DType::kQ8_0, q->data, deq.data(), q->n_elements());
    const float* ref = reinterpret_cast<const float*>(x->data);
    for (int64_t b = 0; b < q->n_elements() / 32; ++b) {
      float amax = 0;
      for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(ref[b * 32 + j]));
      for (int j = 0; j < 32; ++j)
        ASSERT_LE(std::fabs(ref[b * 32 + j] - deq[size_t(b * 32 + j)]),
                  amax * (0.5f / 127 + 1.f / 2048) * 1.0001f);
    }
  }
  EXPECT_NE(load_hf_checkpoint(kDir + "tiny_hf/gemma4_e2b_like", {"q4"}).error().find("--dtype"),
            std::string::npos);
  // Low-precision weights run end to end (the distance to the f32 reference is printed, not
  // bounded: it depends on these random weights, not on the loader).
  const auto fx = expected("gemma4_e2b_like");
  for (const char* dt : {"bf16", "q8_0"}) {
    auto o = exact_options(kDir + "tiny_hf/gemma4_e2b_like");
    o.hf_dtype = dt;
    const auto lo = run(o, fx);
    ASSERT_EQ(lo.size(), 3u);
    for (float x : lo[0]) ASSERT_TRUE(std::isfinite(x));
    std::printf("--dtype %s: max |g4 - transformers f32| = %.3g\n", dt, max_diff(lo, fx));
  }
}

// A scratch copy of a fixture directory that a test may corrupt.
struct Scratch {
  fs::path p;
  Scratch(const std::string& sub, const std::string& tag)
      : p(fs::temp_directory_path() / ("g4_hf_" + tag + "_" + std::to_string(::getpid()))) {
    fs::remove_all(p);
    fs::copy(kDir + "tiny_hf/" + sub, p);
  }
  ~Scratch() { fs::remove_all(p); }
  std::string load_error() const {
    auto e = Engine::load(exact_options(p.string()));
    return e.ok() ? std::string() : e.error();
  }
  void edit_config(const std::function<void(nlohmann::json&)>& fn) const {
    nlohmann::json j = nlohmann::json::parse(std::ifstream(p / "config.json"));
    fn(j);
    std::ofstream(p / "config.json") << j.dump();
  }
  // Rewrites model.safetensors through `fn` (name, dtype, shape, bytes) -> keep?
  void rewrite(const std::function<bool(std::string&, std::string&, nlohmann::json&)>& fn) const {
    auto f = SafetensorsFile::open((p / "model.safetensors").string());
    ASSERT_TRUE(f.ok());
    nlohmann::json h = nlohmann::json::object();
    std::vector<uint8_t> data;
    for (const StTensor& t : f.value()->tensors()) {
      std::string name = t.name, dtype = t.type == DType::kF32 ? "F32" : "F16";
      nlohmann::json shape = t.shape;
      if (!fn(name, dtype, shape)) continue;
      h[name] = {{"dtype", dtype},
                 {"shape", shape},
                 {"data_offsets", {data.size(), data.size() + t.nbytes}}};
      data.insert(data.end(), t.data, t.data + t.nbytes);
    }
    const std::string hs = h.dump();
    std::vector<uint8_t> out(8);
    for (int i = 0; i < 8; ++i) out[size_t(i)] = uint8_t(uint64_t(hs.size()) >> (8 * i));
    out.insert(out.end(), hs.begin(), hs.end());
    out.insert(out.end(), data.begin(), data.end());
    f.value().reset();
    std::ofstream(p / "model.safetensors", std::ios::binary)
        .write(reinterpret_cast<const char*>(out.data()), std::streamsize(out.size()));
  }
};

TEST(HfCheckpoint, BadCheckpoints) {
  const std::string m = "model.layers.0.mlp.up_proj.weight";
  {
    Scratch s("gemma4_e2b_like", "trunc");
    fs::resize_file(s.p / "model.safetensors", fs::file_size(s.p / "model.safetensors") - 100);
    EXPECT_NE(s.load_error().find("outside"), std::string::npos) << s.load_error();
    fs::resize_file(s.p / "model.safetensors", 5);
    EXPECT_NE(s.load_error().find("too short"), std::string::npos) << s.load_error();
  }
  {
    Scratch s("gemma4_e2b_like", "missing");
    s.rewrite([&](std::string& n, std::string&, nlohmann::json&) { return n != m; });
    EXPECT_NE(s.load_error().find("missing tensor 'blk.0.ffn_up.weight'"), std::string::npos)
        << s.load_error();
  }
  {
    Scratch s("gemma4_e2b_like", "unknown");
    s.rewrite([&](std::string& n, std::string&, nlohmann::json&) {
      if (n == m) n = "model.layers.0.mlp.extra_proj.weight";
      return true;
    });
    EXPECT_NE(s.load_error().find("unknown tensor"), std::string::npos) << s.load_error();
  }
  {
    // Untied head declared but not stored (untied heads that are stored: ConfigFuzz.*).
    Scratch s("gemma4_e2b_like", "lmhead");
    s.edit_config([](nlohmann::json& j) { j["tie_word_embeddings"] = false; });
    EXPECT_NE(s.load_error().find("tie_word_embeddings: false but the checkpoint has no "
                                  "lm_head.weight"),
              std::string::npos)
        << s.load_error();
  }
  {
    Scratch s("gemma4_e2b_like", "perlayer");  // a per-layer override g4 has no place for
    s.edit_config([](nlohmann::json& j) { j["per_layer_config"]["0"]["sliding_window"] = 4; });
    EXPECT_NE(s.load_error().find("per_layer_config[0] overrides 'sliding_window'"),
              std::string::npos)
        << s.load_error();
  }
  {
    Scratch s("gemma4_e2b_like", "dtype");  // same bytes, declared as I32
    s.rewrite([&](std::string& n, std::string& dt, nlohmann::json&) {
      if (n == m) dt = "I32";
      return true;
    });
    EXPECT_NE(s.load_error().find("I32, which is not supported"), std::string::npos)
        << s.load_error();
  }
  {
    Scratch s("gemma4_e2b_like", "shape");  // config says a narrower MLP than the tensors hold
    s.edit_config([](nlohmann::json& j) { j["intermediate_size"] = 40; });
    EXPECT_NE(s.load_error().find("has shape"), std::string::npos) << s.load_error();
  }
  {
    Scratch s("gemma3_4b_like", "heads");  // sharded; config head count disagrees
    s.edit_config([](nlohmann::json& j) { j["num_key_value_heads"] = 1; });
    EXPECT_NE(s.load_error().find("blk.0.attn_k.weight' has shape"), std::string::npos)
        << s.load_error();
  }
  {
    Scratch s("gemma3_4b_like", "config");
    s.edit_config([](nlohmann::json& j) { j["model_type"] = "llama"; });
    EXPECT_NE(s.load_error().find("'llama' is not supported"), std::string::npos);
    s.edit_config([](nlohmann::json& j) {
      j["model_type"] = "gemma3_text";
      j["hidden_size"] = "48";
    });
    EXPECT_NE(s.load_error().find("'hidden_size' is not a count"), std::string::npos);
    s.edit_config([](nlohmann::json& j) {
      j["hidden_size"] = 48;
      j["query_pre_attn_scalar"] = 0;  // any positive value runs (ConfigFuzz.*)
    });
    EXPECT_NE(s.load_error().find("query_pre_attn_scalar must be > 0"), std::string::npos);
    s.edit_config([](nlohmann::json& j) {
      j["query_pre_attn_scalar"] = 16;
      j["rope_parameters"]["full_attention"]["rope_type"] = "yarn";
    });
    EXPECT_NE(s.load_error().find("RoPE 'yarn'"), std::string::npos);
    std::ofstream(s.p / "config.json") << "{";
    EXPECT_NE(s.load_error().find("not a JSON object"), std::string::npos);
  }
}

// Gemma 2 config.json forms: the Hub's older files (no layer_types, legacy rope_theta, both
// activation keys) give the same logits, as does chunked prefill; null soft-caps mean none;
// bad values are named.
TEST(HfCheckpoint, Gemma2Configs) {
  const auto fx = expected("gemma2_2b_like");
  const auto want = run(exact_options(kDir + "tiny_hf/gemma2_2b_like"), fx);
  ASSERT_EQ(want.size(), 3u);
  Scratch s("gemma2_2b_like", "g2");
  s.edit_config([](nlohmann::json& j) {
    j.erase("layer_types");
    j.erase("rope_parameters");
    j["rope_theta"] = 10000.0;
    j["hidden_act"] = "gelu_pytorch_tanh";
    j["cache_implementation"] = "hybrid";
  });
  EXPECT_TRUE(run(exact_options(s.p.string()), fx) == want);
  // Prefill in 3-token chunks (the sliding rings wrap between steps): the same logits.
  auto chunked = exact_options(kDir + "tiny_hf/gemma2_2b_like");
  chunked.max_chunk = 3;
  EXPECT_TRUE(run(chunked, fx) == want);
  auto f = load_hf_checkpoint(s.p.string(), {});
  ASSERT_TRUE(f.ok()) << f.error();
  EXPECT_EQ(f.value()->get_string("general.architecture").value().value(), "gemma2");
  EXPECT_EQ(f.value()->get_float("gemma2.attn_logit_softcapping").value().value(), 50.0);
  EXPECT_EQ(f.value()->get_float("gemma2.final_logit_softcapping").value().value(), 30.0);
  EXPECT_EQ(f.value()->get_uint("gemma2.attention.sliding_window_pattern").value().value(), 2u);
  EXPECT_EQ(f.value()->find("gemma2.attention.scale"), nullptr);  // 16 = head_dim: derived
  EXPECT_EQ(f.value()->tensor("blk.0.attn_q_norm.weight"), nullptr);
  s.edit_config([](nlohmann::json& j) {
    j["attn_logit_softcapping"] = nullptr;
    j["final_logit_softcapping"] = nullptr;
  });
  auto none = load_hf_checkpoint(s.p.string(), {});
  ASSERT_TRUE(none.ok()) << none.error();
  EXPECT_EQ(none.value()->get_float("gemma2.attn_logit_softcapping").value().value(), 0.0);
  EXPECT_EQ(s.load_error(), "");
  s.edit_config([](nlohmann::json& j) { j["attn_logit_softcapping"] = -1; });
  EXPECT_NE(s.load_error().find("'attn_logit_softcapping' must be >= 0"), std::string::npos)
      << s.load_error();
  s.edit_config([](nlohmann::json& j) {
    j["attn_logit_softcapping"] = 50;
    j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}};
  });
  EXPECT_NE(s.load_error().find("RoPE 'linear' is not supported for gemma2"), std::string::npos)
      << s.load_error();
  s.edit_config([](nlohmann::json& j) {
    j.erase("rope_scaling");
    j["rope_parameters"] = {{"rope_type", "yarn"}, {"rope_theta", 1e4}};
  });
  EXPECT_NE(s.load_error().find("RoPE 'yarn'"), std::string::npos) << s.load_error();
}

}  // namespace
}  // namespace g4
