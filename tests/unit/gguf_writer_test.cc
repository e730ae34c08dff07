// GgufWriter round trips through g4's reader, its error paths, and `quantize_model` end to
// end on the tiny checkpoints of tests/golden/tiny (rows of 48 and 64: both fallbacks).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "g4/engine.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "model/quantize.h"

namespace g4 {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("g4_writer_test_" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const char* n) const { return (path / n).string(); }
};

// A reader-side value built by hand, for copy_kv.
GgufValue scalar(GgufType t, uint64_t u, int64_t i, double f) {
  GgufValue v;
  v.type = t;
  v.u = u;
  v.i = i;
  v.f = f;
  return v;
}

TEST(GgufWriter, RoundTripsMetadataAndTensors) {
  TempDir tmp;
  const std::string path = tmp.file("a.gguf");
  GgufWriter w;
  w.set_string("general.architecture", "gemma3");
  w.set_u32("general.alignment", 64);
  ASSERT_TRUE(w.copy_kv("t.i8", scalar(GgufType::kI8, 0, -5, 0)).ok());
  ASSERT_TRUE(w.copy_kv("t.u16", scalar(GgufType::kU16, 65535, 0, 0)).ok());
  ASSERT_TRUE(w.copy_kv("t.i64", scalar(GgufType::kI64, 0, -1234567890123, 0)).ok());
  ASSERT_TRUE(w.copy_kv("t.f32", scalar(GgufType::kF32, 0, 0, 0.25)).ok());
  ASSERT_TRUE(w.copy_kv("t.f64", scalar(GgufType::kF64, 0, 0, 1e300)).ok());
  ASSERT_TRUE(w.copy_kv("t.bool", scalar(GgufType::kBool, 1, 0, 0)).ok());
  GgufValue arr;
  arr.type = GgufType::kArray;
  arr.elem_type = GgufType::kI32;
  const int32_t ints[3] = {1, -2, 3};
  arr.count = 3;
  arr.elems = reinterpret_cast<const uint8_t*>(ints);
  ASSERT_TRUE(w.copy_kv("t.ints", arr).ok());
  GgufValue strs;
  strs.type = GgufType::kArray;
  strs.elem_type = GgufType::kString;
  strs.strings = {"a", "", "\xE2\x96\x81x"};
  strs.count = 3;
  ASSERT_TRUE(w.copy_kv("t.strs", strs).ok());
  GgufValue nested;
  nested.type = GgufType::kArray;
  nested.elem_type = GgufType::kArray;
  EXPECT_FALSE(w.copy_kv("t.nested", nested).ok());
  w.set_u32("t.i8", 7);  // replacing keeps the key's position and count

  std::vector<float> a(5);
  for (int i = 0; i < 5; ++i) a[size_t(i)] = float(i) - 1.5f;
  std::vector<uint8_t> b(6 * 34, 0xAB);  // 3 rows of 2 blocks
  ASSERT_TRUE(w.add_tensor("a", 1, {5, 1, 1, 1}, DType::kF32).ok());
  ASSERT_TRUE(w.add_tensor("b", 2, {64, 3, 1, 1}, DType::kQ8_0).ok());
  EXPECT_FALSE(w.add_tensor("b", 1, {32, 1, 1, 1}, DType::kQ8_0).ok());  // duplicate
  EXPECT_FALSE(w.add_tensor("c", 1, {48, 1, 1, 1}, DType::kQ8_0).ok());  // 48 % 32
  EXPECT_FALSE(w.add_tensor("c", 2, {32, 0, 1, 1}, DType::kF32).ok());   // empty dim
  ASSERT_TRUE(w.begin(path).ok());
  EXPECT_TRUE(fs::exists(path + ".tmp"));
  EXPECT_FALSE(fs::exists(path));
  ASSERT_TRUE(w.write(a.data(), 8).ok());  // a tensor may arrive in pieces
  ASSERT_TRUE(w.write(a.data() + 2, 12).ok());
  ASSERT_TRUE(w.write(b.data(), b.size()).ok());
  ASSERT_TRUE(w.finish().ok());
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  EXPECT_EQ(fs::file_size(path), w.file_size());

  auto f = GgufFile::open(path);
  ASSERT_TRUE(f.ok()) << f.error();
  const GgufFile& g = *f.value();
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.alignment(), 64u);
  EXPECT_EQ(g.metadata().size(), 10u);
  EXPECT_EQ(g.metadata()[2].first, "t.i8");
  EXPECT_EQ(g.find("t.i8")->u, 7u);
  EXPECT_EQ(g.find("t.u16")->u, 65535u);
  EXPECT_EQ(g.find("t.i64")->i, -1234567890123);
  EXPECT_EQ(g.find("t.f32")->f, 0.25);
  EXPECT_EQ(g.find("t.f64")->f, 1e300);
  EXPECT_EQ(g.find("t.bool")->u, 1u);
  EXPECT_EQ(g.find("t.ints")->count, 3u);
  EXPECT_EQ(std::memcmp(g.find("t.ints")->elems, ints, sizeof(ints)), 0);
  EXPECT_EQ(g.find("t.strs")->strings, strs.strings);
  EXPECT_EQ(*g.get_string("general.architecture").value(), "gemma3");
  ASSERT_EQ(g.tensors().size(), 2u);
  EXPECT_EQ(g.data_offset() % 64, 0u);
  EXPECT_EQ(g.tensors()[1].offset, 64u);
  EXPECT_EQ(std::memcmp(g.tensors()[0].data, a.data(), 20), 0);
  EXPECT_EQ(std::memcmp(g.tensors()[1].data, b.data(), b.size()), 0);

  // Copying every key and tensor of a file gives the same bytes back.
  GgufWriter w2;
  for (const auto& [k, v] : g.metadata()) {
    if (k == "general.alignment")
      w2.set_u32(k, uint32_t(v.u));
    else
      ASSERT_TRUE(w2.copy_kv(k, v).ok()) << k;
  }
  for (const auto& t : g.tensors()) ASSERT_TRUE(w2.add_tensor(t.name, t.n_dims, t.ne, t.type).ok());
  const std::string path2 = tmp.file("b.gguf");
  ASSERT_TRUE(w2.begin(path2).ok());
  for (const auto& t : g.tensors()) ASSERT_TRUE(w2.write(t.data, t.nbytes).ok());
  ASSERT_TRUE(w2.finish().ok());
  std::ifstream f1(path, std::ios::binary), f2(path2, std::ios::binary);
  const std::string s1((std::istreambuf_iterator<char>(f1)), {});
  const std::string s2((std::istreambuf_iterator<char>(f2)), {});
  EXPECT_EQ(s1, s2);
}

TEST(GgufWriter, ErrorsLeaveNoFile) {
  TempDir tmp;
  {
    GgufWriter w;
    ASSERT_TRUE(w.add_tensor("a", 1, {4, 1, 1, 1}, DType::kF32).ok());
    ASSERT_TRUE(w.begin(tmp.file("over.gguf")).ok());
    const float x[8] = {};
    EXPECT_FALSE(w.write(x, sizeof(x)).ok());  // more than declared
    EXPECT_FALSE(w.finish().ok());
  }
  {
    GgufWriter w;
    ASSERT_TRUE(w.add_tensor("a", 1, {4, 1, 1, 1}, DType::kF32).ok());
    ASSERT_TRUE(w.begin(tmp.file("short.gguf")).ok());
    const float x[2] = {};
    ASSERT_TRUE(w.write(x, sizeof(x)).ok());
    auto s = w.finish();  // incomplete
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find("not completely written"), std::string::npos) << s.message();
  }
  {
    GgufWriter w;  // abandoned half-way: the destructor removes the temporary file
    ASSERT_TRUE(w.add_tensor("a", 1, {4, 1, 1, 1}, DType::kF32).ok());
    ASSERT_TRUE(w.begin(tmp.file("abandoned.gguf")).ok());
  }
  EXPECT_TRUE(fs::is_empty(tmp.path));
  GgufWriter w;
  auto s = w.begin(tmp.file("no/such/dir.gguf"));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("cannot write"), std::string::npos) << s.message();
}

std::vector<float> last_logits(const std::string& path, const std::vector<int32_t>& ids) {
  EngineOptions o;
  o.model_path = path;
  o.n_ctx = 64;
  o.n_threads = 1;
  auto e = Engine::load(o);
  EXPECT_TRUE(e.ok()) << e.error();
  if (!e.ok()) return {};
  Session s(*e.value());
  auto lg = s.logits_all(ids);
  EXPECT_TRUE(lg.ok());
  const size_t v = size_t(e.value()->model().config().vocab_size);
  return std::vector<float>(lg.value().end() - long(v), lg.value().end());
}

TEST(Quantize, TinyModelEveryTypeLoadsAndRuns) {
  const std::string in = std::string(G4_SOURCE_DIR) + "/tests/golden/tiny/tiny_1b_like.gguf";
  TempDir tmp;
  const std::vector<int32_t> ids{2, 17, 99, 5, 250, 31};
  const auto ref = last_logits(in, ids);
  ASSERT_FALSE(ref.empty());
  for (const char* t : {"f16", "bf16", "q8_0", "q4_0", "q5_0", "q4_k", "q6_k"}) {
    QuantizeOptions o;
    o.target = parse_quant_type(t).value();
    o.n_threads = 2;
    const std::string out = tmp.file(t);
    auto r = quantize_model(in, out, o);
    ASSERT_TRUE(r.ok()) << t << ": " << r.error();
    for (const auto& p : r.value().plan) {
      if (p.from == DType::kF32) {
        EXPECT_EQ(p.to, DType::kF32) << p.name;  // norms and 1-D tensors are kept
        continue;
      }
      // Rows of 48 fit no 32-block: F16. Rows of 64 take 32-block types directly and the
      // K-quant fallbacks (Q4_K -> Q5_0, Q6_K -> Q8_0). The tied embedding (rows of 48)
      // is F16 too.
      DType want = o.target;
      if (p.name.find("attn_output") != std::string::npos ||
          p.name.find("ffn_down") != std::string::npos) {
        if (want == DType::kQ4_K) want = DType::kQ5_0;
        if (want == DType::kQ6_K) want = DType::kQ8_0;
      } else if (want != DType::kBF16) {
        want = DType::kF16;
      }
      EXPECT_EQ(p.to, want) << t << " " << p.name;
    }
    const auto got = last_logits(out, ids);
    ASSERT_EQ(got.size(), ref.size());
    double max_diff = 0, max_ref = 0;
    for (size_t k = 0; k < got.size(); ++k) {
      ASSERT_TRUE(std::isfinite(got[k]));
      max_diff = std::max(max_diff, double(std::fabs(got[k] - ref[k])));
      max_ref = std::max(max_ref, double(std::fabs(ref[k])));
    }
    // F16 input re-encoded as F16 is a byte copy: identical logits.
    if (o.target == DType::kF16) {
      EXPECT_EQ(max_diff, 0.0);
    }
    std::printf("  %-5s max |logit diff| %.4f (max |logit| %.3f)\n", t, max_diff, max_ref);
  }
  // Same file in and out, and a type g4 cannot write.
  QuantizeOptions o;
  EXPECT_FALSE(quantize_model(in, in, o).ok());
  EXPECT_FALSE(parse_quant_type("q2_k").ok());
  EXPECT_TRUE(parse_quant_type("Q4_K").ok());
}

}  // namespace
}  // namespace g4
