// Corrupted copies of the real model: truncated, bit-flipped and lying-header files must each
// give one clear error (and the `g4` binary a non-zero exit), never a crash. Run under
// ASan/UBSan by the asan preset.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "g4/engine.h"
#include "io/gguf.h"
#include "model_path.h"

namespace g4 {

namespace {

std::string model_path() {
  return test::default_model_path();
}

std::vector<uint8_t> read_prefix(const std::string& path, size_t n) {
  std::ifstream in(path, std::ios::binary);
  std::vector<uint8_t> b(n);
  in.read(reinterpret_cast<char*>(b.data()), std::streamsize(n));
  b.resize(size_t(in.gcount()));
  return b;
}

// Everything the engine does with a file short of running it: parse, config, tokenizer, weights.
Status load_all(const uint8_t* data, size_t size) {
  auto f = GgufFile::parse(data, size, "corrupt.gguf");
  if (!f.ok()) return f.status();
  auto t = Tokenizer::from_gguf(*f.value());
  if (!t.ok()) return t.status();
  auto m = load_gemma3(*f.value(), ModelOptions{});
  if (!m.ok()) return m.status();
  return Status();
}

int run_g4(const std::string& args) {
  const std::string cmd =
      std::string(G4_BINARY) + " " + args + " > /dev/null 2> /tmp/g4_bad_file_stderr.txt";
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
}

class BadFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = model_path();
    ASSERT_TRUE(std::filesystem::exists(path_)) << path_ << " missing: run `g4 pull`";
    size_ = std::filesystem::file_size(path_);
    auto f = GgufFile::open(path_);
    ASSERT_TRUE(f.ok()) << f.error();
    data_offset_ = f.value()->data_offset();
  }
  std::string path_;
  size_t size_ = 0;
  size_t data_offset_ = 0;
};

}  // namespace

TEST_F(BadFiles, TruncatedFilesFailCleanly) {
  const std::string tmp = std::filesystem::temp_directory_path() / "g4_truncated.gguf";
  for (size_t cut :
       {size_t(0), size_t(3), size_t(23), size_t(24), size_t(200), size_t(4096), size_t(1) << 20,
        data_offset_ - 1, data_offset_ + 1000, size_ / 2, size_ - 1}) {
    std::filesystem::copy_file(path_, tmp, std::filesystem::copy_options::overwrite_existing);
    std::filesystem::resize_file(tmp, cut);
    EngineOptions o;
    o.model_path = tmp;
    o.n_threads = 1;
    auto e = Engine::load(o);
    ASSERT_FALSE(e.ok()) << "file cut at " << cut << " bytes was accepted";
    EXPECT_FALSE(e.error().empty());
    if (cut == size_ / 2 || cut == 200) {
      EXPECT_EQ(run_g4("inspect " + tmp), 1) << "cut at " << cut;
      EXPECT_EQ(run_g4("run --raw -n 1 -m " + tmp + " hi"), 1) << "cut at " << cut;
    }
  }
  std::filesystem::remove(tmp);
}

TEST_F(BadFiles, LyingHeadersFailCleanly) {
  const auto base = read_prefix(path_, size_);
  auto mutate = [&](auto fn) {
    auto b = base;
    fn(b);
    return load_all(b.data(), b.size());
  };
  auto put64 = [](std::vector<uint8_t>& b, size_t off, uint64_t v) {
    std::memcpy(b.data() + off, &v, 8);
  };
  EXPECT_FALSE(mutate([&](auto& b) { put64(b, 8, uint64_t(1) << 40); }).ok());   // tensor count
  EXPECT_FALSE(mutate([&](auto& b) { put64(b, 16, uint64_t(1) << 40); }).ok());  // kv count
  EXPECT_FALSE(mutate([&](auto& b) { put64(b, 8, 235); }).ok());                 // one tensor short
  EXPECT_FALSE(mutate([&](auto& b) { b[4] = 9; }).ok());                         // version
  EXPECT_FALSE(mutate([&](auto& b) { put64(b, 24, uint64_t(1) << 50); }).ok());  // first key length
  EXPECT_FALSE(mutate([&](auto& b) { b[0] = 'X'; }).ok());                       // magic
  const Status s = mutate([&](auto& b) { put64(b, 8, 237); });
  ASSERT_FALSE(s.ok());
  std::printf("example error: %s\n", s.message().c_str());
}

TEST_F(BadFiles, BitFlipsInMetadataNeverCrash) {
  auto b = read_prefix(path_, size_);
  std::mt19937_64 rng(11);
  int rejected = 0;
  for (int it = 0; it < 60; ++it) {
    auto c = b;
    for (int k = 0; k < 3; ++k) {
      // Favour the first 4 KiB (counts, keys, types) and the tensor-info table.
      const size_t span = (rng() & 1) ? 4096 : data_offset_;
      c[rng() % span] ^= uint8_t(1u << (rng() % 8));
    }
    const Status s = load_all(c.data(), c.size());
    if (!s.ok()) {
      ++rejected;
      EXPECT_FALSE(s.message().empty());
    }
  }
  std::printf("bit flips: %d of 60 corrupted files rejected, the rest still well-formed\n",
              rejected);
}

}  // namespace g4
