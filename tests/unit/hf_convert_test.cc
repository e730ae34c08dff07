// `g4 convert` (src/cli/cmd_convert.cc) on the tiny HF fixtures of scripts/gen_tiny_hf.py:
// the converted GGUF gives transformers' float32 logits (max |Δ| <= 1e-3, the bound of
// hf_checkpoint_test.cc) and exactly the logits of the directory loaded directly; its
// tokenizer metadata tokenizes like the `tokenizers` package; f16/bf16 give the weights of
// `--dtype f16/bf16` on the directory; the block types equal `g4 quantize` of the f32
// conversion byte for byte, and `--dtype q4_k` etc. on a directory equals loading that file; bad
// inputs fail with one clear line and leave no file behind. (llama.cpp loading the same files:
// tests/cli/convert_llamacpp_test.py.)
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "exact_options.h"
#include "g4/engine.h"
#include "io/gguf.h"
#include "model/quantize.h"

namespace g4 {
namespace {

namespace fs = std::filesystem;
const std::string kHf = std::string(G4_SOURCE_DIR) + "/tests/golden/tiny_hf/";

nlohmann::json expected(const std::string& sub) {
  std::ifstream in(kHf + sub + "/expected.json");
  return in.good() ? nlohmann::json::parse(in) : nlohmann::json();
}

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

struct Tmp {
  fs::path p = fs::temp_directory_path() / ("g4_convert_" + std::to_string(::getpid()));
  Tmp() { fs::create_directories(p); }
  ~Tmp() { fs::remove_all(p); }
  std::string operator/(const std::string& f) const { return (p / f).string(); }
};

// Runs the g4 binary; stderr goes to `err`.
int g4(const std::string& args, std::string* err = nullptr) {
  const std::string ef =
      (fs::temp_directory_path() / ("g4_convert_err_" + std::to_string(::getpid()) + ".txt"))
          .string();
  const int rc =
      std::system((std::string(G4_BINARY) + " " + args + " > /dev/null 2> " + ef).c_str());
  if (err) {
    std::ifstream in(ef);
    err->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  fs::remove(ef);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

class Convert : public ::testing::TestWithParam<const char*> {};

TEST_P(Convert, F32MatchesTransformersAndDirectory) {
  const std::string sub = GetParam();
  const auto fx = expected(sub);
  ASSERT_FALSE(fx.is_null()) << sub;
  Tmp tmp;
  const std::string out = tmp / "m.gguf";
  ASSERT_EQ(g4("convert " + kHf + sub + " " + out + " --type f32"), 0);
  EXPECT_FALSE(fs::exists(out + ".tmp"));
  const auto conv = run(exact_options(out), fx);
  ASSERT_EQ(conv.size(), fx["prompts"].size());
  const double d = max_diff(conv, fx);
  std::printf("%s: g4 convert --type f32, max |g4 - transformers f32| = %.3g\n", sub.c_str(), d);
  EXPECT_LT(d, 1e-3);
  // The same tensors as the directory loaded directly: the same logits, bit for bit.
  const auto dir = run(exact_options(kHf + sub), fx);
  ASSERT_EQ(dir.size(), conv.size());
  for (size_t i = 0; i < dir.size(); ++i) EXPECT_TRUE(dir[i] == conv[i]) << "prompt " << i;
  // Tokenizer metadata: the ids the `tokenizers` package gives (expected.json "tokens").
  auto e = Engine::load(exact_options(out));
  ASSERT_TRUE(e.ok()) << e.error();
  const Tokenizer& tok = e.value()->tokenizer();
  EXPECT_EQ(tok.size(), 272);
  EXPECT_EQ(tok.bos(), 2);
  for (const auto& t : fx["tokens"]) {
    EXPECT_EQ(tok.encode(t["text"].get<std::string>(), false, false),
              t["ids"].get<std::vector<int32_t>>())
        << t["text"];
  }
  auto f = GgufFile::open(out);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f.value()->get_string("tokenizer.ggml.model").value().value(),
            sub.rfind("gemma4", 0) == 0 ? "gemma4" : "llama");
  EXPECT_EQ(f.value()->get_uint("general.file_type").value().value(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Convert,
                         ::testing::Values("gemma4_e2b_like", "gemma4_31b_like", "gemma4_26b_like",
                                           "gemma3_4b_like", "gemma2_2b_like", "gemma2_qpas"));

// f16/bf16: the same weights as loading the directory with that --dtype. Block types: the
// conversion re-encoded by the quantizer, identical to `g4 quantize` of the f32 file; and a
// directory loaded with that --dtype holds exactly those weights.
TEST(Convert, TypesEqualQuantizeOfF32) {
  Tmp tmp;
  for (const char* sub : {"gemma4_26b_like", "gemma4_e2b_like"}) {
    const std::string dir = kHf + sub, f32 = tmp / (std::string(sub) + ".f32.gguf");
    ASSERT_EQ(g4("convert " + dir + " " + f32 + " --type f32"), 0);
    const auto fx = expected(sub);
    for (const char* t : {"f16", "bf16"}) {  // the image in that type: = --dtype on load
      const std::string a = tmp / "a.gguf";
      ASSERT_EQ(g4("convert " + dir + " " + a + " --type " + t), 0) << sub << " " << t;
      auto o = exact_options(dir);
      o.hf_dtype = t;
      EXPECT_TRUE(run(o, fx) == run(exact_options(a), fx)) << sub << " " << t;
    }
    for (const char* t : {"q8_0", "q4_0", "q5_0", "q4_k", "q6_k"}) {
      const std::string a = tmp / "a.gguf", b = tmp / "b.gguf";
      ASSERT_EQ(g4("convert " + dir + " " + a + " --type " + t), 0) << sub << " " << t;
      ASSERT_EQ(g4("quantize " + f32 + " " + b + " --type " + t), 0) << sub << " " << t;
      EXPECT_TRUE(slurp(a) == slurp(b)) << sub << " " << t;
      if (std::string(t) == "q4_k" || std::string(t) == "q6_k") {
        auto o = exact_options(dir);
        o.hf_dtype = t;
        const auto direct = run(o, fx), quant = run(exact_options(b), fx);
        ASSERT_EQ(direct.size(), 3u);
        for (size_t i = 0; i < direct.size(); ++i)
          EXPECT_TRUE(direct[i] == quant[i]) << sub << " " << t << " prompt " << i;
        std::printf("%s --dtype %s: max |g4 - transformers f32| = %.3g\n", sub, t,
                    max_diff(direct, fx));
      }
    }
    // The MoE router stays f32 (llama-quant keeps ffn_gate_inp), the experts are quantised.
    if (std::string(sub) == "gemma4_26b_like") {
      ASSERT_EQ(g4("convert " + dir + " " + (tmp / "q.gguf") + " --type q4_0"), 0);
      auto q = GgufFile::open(tmp / "q.gguf");
      ASSERT_TRUE(q.ok());
      EXPECT_EQ(q.value()->tensor("blk.0.ffn_gate_inp.weight")->type, DType::kF32);
      EXPECT_EQ(q.value()->tensor("blk.0.ffn_gate_up_exps.weight")->type, DType::kQ4_0);
    }
  }
}

TEST(Convert, BadInputs) {
  Tmp tmp;
  const std::string ok_dir = kHf + "gemma4_31b_like", out = tmp / "x.gguf";
  std::string err;
  auto expect_fail = [&](const std::string& args, const std::string& needle) {
    EXPECT_EQ(g4(args, &err), 1) << args;
    EXPECT_NE(err.find(needle), std::string::npos) << args << ": " << err;
    EXPECT_FALSE(fs::exists(out)) << args;
    EXPECT_FALSE(fs::exists(out + ".tmp")) << args;
  };
  expect_fail("convert " + (tmp / "nope") + " " + out + " --type f32", "is not a directory");
  fs::create_directories(tmp / "empty");
  expect_fail("convert " + (tmp / "empty") + " " + out, "no config.json");
  expect_fail("convert " + ok_dir + " " + out + " --type q3_k", "unsupported quantization type");
  expect_fail("convert " + ok_dir + " " + (tmp / "no/such/dir/x.gguf"), "no such directory");
  expect_fail("convert " + ok_dir + " " + tmp.p.string(), "is a directory");
  // A corrupt checkpoint: truncated safetensors, broken tokenizer.json.
  fs::copy(ok_dir, tmp / "bad");
  fs::resize_file(tmp / "bad/model.safetensors", 1000);
  expect_fail("convert " + (tmp / "bad") + " " + out + " --type q8_0", "model.safetensors");
  fs::remove_all(tmp / "bad");
  fs::copy(ok_dir, tmp / "bad");
  std::ofstream(tmp / "bad/tokenizer.json") << "{\"model\": 1}";
  expect_fail("convert " + (tmp / "bad") + " " + out + " --type f32", "tokenizer.json");
  // A tokenizer larger than the embedding.
  {
    nlohmann::json j = nlohmann::json::parse(std::ifstream(ok_dir + "/tokenizer.json"));
    j["model"]["vocab"]["zzz"] = 272;
    std::ofstream(tmp / "bad/tokenizer.json") << j.dump();
  }
  expect_fail("convert " + (tmp / "bad") + " " + out + " --type f32", "273 tokens");
  // An output that cannot be written: /proc takes no new files, even from root; a read-only
  // directory (skipped when running as root, who may write anyway).
  EXPECT_EQ(g4("convert " + ok_dir + " /proc/g4_convert_test.gguf --type f32", &err), 1);
  EXPECT_NE(err.find("cannot create /proc/g4_convert_test.gguf.tmp"), std::string::npos) << err;
  EXPECT_EQ(g4("convert " + ok_dir + " /proc/g4_convert_test.gguf --type q8_0", &err), 1);
  EXPECT_NE(err.find("/proc/g4_convert_test.gguf"), std::string::npos) << err;
  fs::create_directories(tmp / "ro");
  fs::permissions(tmp / "ro", fs::perms::owner_read | fs::perms::owner_exec);
  if (::geteuid() != 0) {
    EXPECT_EQ(g4("convert " + ok_dir + " " + (tmp / "ro/x.gguf") + " --type f32", &err), 1);
    EXPECT_NE(err.find("cannot create"), std::string::npos) << err;
    EXPECT_EQ(g4("convert " + ok_dir + " " + (tmp / "ro/x.gguf") + " --type q8_0", &err), 1);
  }
  fs::permissions(tmp / "ro", fs::perms::owner_all);
}

// `g4 logits --exact` is the reference path from the command line: f32 activations and f32
// K/V, so every position's full logits (--all-logits, a NumPy file) meet transformers' float32
// logits at the 1e-3 bound above; --top takes the whole vocabulary.
TEST(Logits, ExactCliMatchesTransformers) {
  const std::string sub = "gemma4_31b_like";
  const auto fx = expected(sub);
  ASSERT_FALSE(fx.is_null());
  Tmp tmp;
  const auto& p0 = fx["prompts"][1];
  std::string ids;
  for (const auto& id : p0["ids"]) ids += (ids.empty() ? "" : ",") + std::to_string(int(id));
  const std::string npy = tmp / "l.npy";
  std::string err;
  ASSERT_EQ(
      g4("logits " + kHf + sub + " --ids " + ids +
             " --exact --embed-scale exact -t 2 --top 5000 --all-positions --all-logits " + npy,
         &err),
      0)
      << err;
  const std::string raw = slurp(npy);
  ASSERT_GT(raw.size(), 10u);
  ASSERT_EQ(raw.compare(0, 6, "\x93NUMPY"), 0);
  uint16_t hl = 0;
  std::memcpy(&hl, raw.data() + 8, 2);
  const std::string header = raw.substr(10, hl);
  const auto& rows = p0["logits"];
  const size_t T = rows.size(), V = rows[0].size();
  EXPECT_NE(header.find("'shape': (" + std::to_string(T) + ", " + std::to_string(V) + ")"),
            std::string::npos)
      << header;
  EXPECT_EQ((10 + hl) % 64, 0u);
  ASSERT_EQ(raw.size(), 10 + hl + T * V * 4);
  double m = 0;
  for (size_t t = 0; t < T; ++t)
    for (size_t v = 0; v < V; ++v) {
      float x;
      std::memcpy(&x, raw.data() + 10 + hl + (t * V + v) * 4, 4);
      m = std::max(m, std::fabs(double(x) - rows[t][v].get<double>()));
    }
  std::printf("g4 logits --exact --all-logits: max |g4 - transformers f32| = %.3g\n", m);
  EXPECT_LT(m, 1e-3);
}

}  // namespace
}  // namespace g4
