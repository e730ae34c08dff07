// Config fuzzing against transformers: random valid Gemma4TextConfig / Gemma3TextConfig
// checkpoints (scripts/gen_config_fuzz.py, fixed seed) whose float32 logits at every position
// transformers computed. For each case this test writes the checkpoint directory as
// save_pretrained would (the recorded config.json, one model.safetensors whose weights come from
// the generator documented in the script, reimplemented here, and the toy tokenizer of
// tests/golden/tiny_hf), then checks
//   - g4 on the directory (exact numerics, f32 K/V) against transformers: max |Δ| <= 1e-3;
//   - `g4 convert --type f32` of the directory, loaded as GGUF: the same bound;
//   - cases where the generator set a field g4 declares unsupported: loading and converting
//     both fail with an error naming that field (never an answer).
// G4_CONFIG_FUZZ_DIR points the test at a larger sweep made by hand (see the script).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "exact_options.h"
#include "g4/engine.h"

namespace g4 {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string fixture_dir() {
  const char* env = std::getenv("G4_CONFIG_FUZZ_DIR");
  return env != nullptr && *env ? std::string(env)
                                : std::string(G4_SOURCE_DIR) + "/tests/golden/config_fuzz";
}

struct Fixture {
  json doc;
  std::vector<float> logits;
};

const Fixture& fixture() {
  static const Fixture f = [] {
    Fixture x;
    std::ifstream in(fixture_dir() + "/cases.json");
    if (in.good()) x.doc = json::parse(in);
    std::ifstream lb(fixture_dir() + "/logits.bin", std::ios::binary);
    const std::string raw((std::istreambuf_iterator<char>(lb)), std::istreambuf_iterator<char>());
    x.logits.resize(raw.size() / 4);
    std::memcpy(x.logits.data(), raw.data(), x.logits.size() * 4);
    return x;
  }();
  return f;
}

// The script's generator: splitmix64 over a per-tensor key, one value per element.
constexpr uint64_t kGold = 0x9E3779B97F4A7C15ull;

uint64_t fnv1a64(const std::string& s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char b : s) h = (h ^ b) * 0x100000001B3ull;
  return h;
}

void fill(const std::string& name, uint64_t seed, double center, double half, float* out,
          size_t n) {
  const uint64_t key = fnv1a64(name) ^ (seed * kGold);
  for (size_t i = 0; i < n; ++i) {
    uint64_t z = key + (uint64_t(i) + 1) * kGold;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    const double u = double(z >> 40) / double(1 << 24);
    out[i] = float(center + half * (2.0 * u - 1.0));
  }
}

// Writes one model.safetensors (F32) holding every tensor the case lists.
void write_safetensors(const json& c, const fs::path& path) {
  json header = json::object();
  size_t off = 0;
  std::vector<std::pair<const json*, size_t>> items;
  for (const json& t : c["tensors"]) {
    size_t n = 1;
    for (const json& d : t[1]) n *= d.get<size_t>();
    header[t[0].get<std::string>()] = {
        {"dtype", "F32"}, {"shape", t[1]}, {"data_offsets", {off, off + 4 * n}}};
    items.emplace_back(&t, n);
    off += 4 * n;
  }
  std::string h = header.dump();
  while (h.size() % 8 != 0) h.push_back(' ');
  std::ofstream out(path, std::ios::binary);
  const uint64_t hn = h.size();
  out.write(reinterpret_cast<const char*>(&hn), 8);
  out.write(h.data(), std::streamsize(h.size()));
  const uint64_t seed = c["seed"].get<uint64_t>();
  for (const auto& [t, n] : items) {
    std::vector<float> v(n);
    fill((*t)[0].get<std::string>(), seed, (*t)[2].get<double>(), (*t)[3].get<double>(), v.data(),
         n);
    out.write(reinterpret_cast<const char*>(v.data()), std::streamsize(4 * n));
  }
}

struct CaseDir {
  fs::path p;
  explicit CaseDir(const json& c) {
    p = fs::temp_directory_path() /
        ("g4_config_fuzz_" + std::to_string(::getpid()) + "_" + c["name"].get<std::string>());
    fs::create_directories(p / "hf");
    std::ofstream(p / "hf/config.json") << c["config"].dump(2);
    const std::string tok = std::string(G4_SOURCE_DIR) + "/tests/golden/tiny_hf/" +
                            (c["arch"] == "gemma4" ? "gemma4_e2b_like" : "gemma3_4b_like");
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
      fs::copy_file(tok + "/" + f, p / "hf" / f);
    write_safetensors(c, p / "hf/model.safetensors");
  }
  ~CaseDir() {
    std::error_code ec;
    fs::remove_all(p, ec);
  }
};

int run_g4(const std::string& args, std::string* err) {
  const std::string ef =
      (fs::temp_directory_path() / ("g4_config_fuzz_err_" + std::to_string(::getpid()) + ".txt"))
          .string();
  const int rc =
      std::system((std::string(G4_BINARY) + " " + args + " > /dev/null 2> " + ef).c_str());
  std::ifstream in(ef);
  err->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  fs::remove(ef);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
}

// Max |g4 - transformers| over every position and the first `cols` vocabulary columns.
double max_diff(const std::string& model, const json& c, size_t cols, std::string* why) {
  auto e = Engine::load(exact_options(model));
  if (!e.ok()) {
    *why = e.error();
    return INFINITY;
  }
  const auto ids = c["ids"].get<std::vector<int32_t>>();
  Session s(*e.value());
  auto lg = s.logits_all(ids);
  if (!lg.ok()) {
    *why = lg.error();
    return INFINITY;
  }
  const size_t T = ids.size(), V = c["vocab"].get<size_t>(), got_v = lg.value().size() / T;
  if (got_v < cols || lg.value().size() != T * got_v) {
    *why = "logits have " + std::to_string(got_v) + " columns";
    return INFINITY;
  }
  const float* ref = fixture().logits.data() + c["logits_offset"].get<size_t>();
  double m = 0;
  for (size_t t = 0; t < T; ++t)
    for (size_t v = 0; v < cols; ++v)
      m = std::max(m, std::fabs(double(lg.value()[t * got_v + v]) - double(ref[t * V + v])));
  return m;
}

class ConfigFuzz : public ::testing::TestWithParam<size_t> {};

TEST_P(ConfigFuzz, MatchesTransformers) {
  const json& cases = fixture().doc["cases"];
  ASSERT_LT(GetParam(), cases.size());
  const json& c = cases[GetParam()];
  CaseDir dir(c);
  const std::string hf = (dir.p / "hf").string(), gguf = (dir.p / "m.gguf").string();
  std::string err;
  const int rc = run_g4("convert " + hf + " " + gguf + " --type f32", &err);
  if (c.contains("expect_error")) {
    const std::string field = c["expect_error"];
    auto e = Engine::load(exact_options(hf));
    ASSERT_FALSE(e.ok()) << c["name"] << ": g4 loaded a config with unsupported " << field;
    EXPECT_NE(e.error().find(field), std::string::npos) << e.error();
    EXPECT_EQ(rc, 1) << err;
    EXPECT_NE(err.find(field), std::string::npos) << err;
    EXPECT_FALSE(fs::exists(gguf));
    return;
  }
  const size_t V = c["vocab"].get<size_t>();
  std::string why;
  const double d_dir = max_diff(hf, c, V, &why);
  EXPECT_LE(d_dir, 1e-3) << c["name"] << " (directory) " << why << "\n" << c["config"].dump();
  ASSERT_EQ(rc, 0) << c["name"] << ": g4 convert failed: " << err;
  // The converted file keeps the tokenizer's 272 rows of the embedding (as llama.cpp's
  // converter does), so its logits have 272 columns.
  const double d_gguf = max_diff(gguf, c, std::min<size_t>(V, 272), &why);
  EXPECT_LE(d_gguf, 1e-3) << c["name"] << " (converted GGUF) " << why;
  std::printf("%s: max |g4 - transformers| directory %.3g, converted %.3g\n",
              c["name"].get<std::string>().c_str(), d_dir, d_gguf);
}

std::vector<size_t> case_indices() {
  std::vector<size_t> v(fixture().doc.is_object() ? fixture().doc["cases"].size() : 0);
  for (size_t i = 0; i < v.size(); ++i) v[i] = i;
  return v;
}

INSTANTIATE_TEST_SUITE_P(Cases, ConfigFuzz, ::testing::ValuesIn(case_indices()),
                         [](const ::testing::TestParamInfo<size_t>& i) {
                           return fixture().doc["cases"][i.param]["name"].get<std::string>();
                         });

// The committed sample must be the size CI promises (>= 20 Gemma 4, >= 10 Gemma 3 configs).
TEST(ConfigFuzzFixture, CoversBothArchitectures) {
  if (std::getenv("G4_CONFIG_FUZZ_DIR") != nullptr) GTEST_SKIP() << "a sweep made by hand";
  int g4n = 0, g3n = 0;
  for (const json& c : fixture().doc["cases"]) {
    if (c.contains("expect_error")) continue;
    (c["arch"] == "gemma4" ? g4n : g3n)++;
  }
  EXPECT_GE(g4n, 20);
  EXPECT_GE(g3n, 10);
}

}  // namespace
}  // namespace g4
