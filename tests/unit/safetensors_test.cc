// safetensors reader: a worked example, every truncation, and each way a header can lie about
// the data (offsets past the end, overlaps, shape/extent mismatch, dtypes, bad JSON), plus
// sharded checkpoints (model.safetensors.index.json).
#include "io/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace g4 {
namespace {

// Builds a file image byte by byte (independent of the reader): u64 header length, header.
std::vector<uint8_t> image(const std::string& header, const std::vector<uint8_t>& data,
                           uint64_t len_override = UINT64_MAX) {
  std::vector<uint8_t> b(8);
  const uint64_t n = len_override == UINT64_MAX ? header.size() : len_override;
  for (int i = 0; i < 8; ++i) b[size_t(i)] = uint8_t(n >> (8 * i));
  b.insert(b.end(), header.begin(), header.end());
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

std::vector<uint8_t> floats(std::initializer_list<float> v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), std::data(v), b.size());
  return b;
}

const std::string kGood =
    R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
    R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[24,28]},)"
    R"("c":{"dtype":"F16","shape":[],"data_offsets":[28,30]}})";

std::vector<uint8_t> good() {
  auto d = floats({1, 2, 3, 4, 5, 6});
  for (uint8_t x : {0x80, 0x3f, 0x00, 0x40, 0x00, 0x3c}) d.push_back(x);  // bf16 1, 2; f16 1
  return image(kGood, d);
}

std::string parse_error(const std::vector<uint8_t>& b) {
  auto f = SafetensorsFile::parse(b.data(), b.size());
  return f.ok() ? std::string() : f.error();
}

std::string one(const std::string& dtype, const std::string& shape, const std::string& offs) {
  return R"({"t":{"dtype":")" + dtype + R"(","shape":)" + shape + R"(,"data_offsets":)" + offs +
         "}}";
}

TEST(Safetensors, WorkedExample) {
  const auto b = good();
  auto f = SafetensorsFile::parse(b.data(), b.size());
  ASSERT_TRUE(f.ok()) << f.error();
  ASSERT_EQ(f.value()->tensors().size(), 3u);
  const StTensor* a = f.value()->tensor("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->type, DType::kF32);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a->nbytes, 24u);
  float x[6];
  std::memcpy(x, a->data, 24);
  EXPECT_EQ(x[5], 6.f);
  EXPECT_EQ(f.value()->tensor("b")->type, DType::kBF16);
  EXPECT_EQ(f.value()->tensor("c")->n_elements(), 1);
  EXPECT_EQ(f.value()->metadata().at("format"), "pt");
  EXPECT_EQ(f.value()->tensor("zz"), nullptr);
}

TEST(Safetensors, EveryTruncationIsAnError) {
  const auto b = good();
  for (size_t n = 0; n < b.size(); ++n) {
    auto f = SafetensorsFile::parse(b.data(), n);
    EXPECT_FALSE(f.ok()) << "prefix " << n;
  }
}

TEST(Safetensors, BadHeaders) {
  const auto d24 = floats({1, 2, 3, 4, 5, 6});
  EXPECT_NE(parse_error(image(kGood, {}, 1u << 20)).find("past the end"), std::string::npos);
  EXPECT_NE(parse_error(image(kGood, {}, UINT64_MAX - 3)).find("past the end"), std::string::npos);
  EXPECT_NE(parse_error(image("{not json", d24)).find("not valid JSON"), std::string::npos);
  EXPECT_NE(parse_error(image("[1,2]", d24)).find("not a JSON object"), std::string::npos);
  // Extent past the data block, begin > end, extent != shape product.
  EXPECT_NE(parse_error(image(one("F32", "[7]", "[0,28]"), d24)).find("outside"),
            std::string::npos);
  EXPECT_NE(parse_error(image(one("F32", "[0]", "[8,4]"), d24)).find("outside"), std::string::npos);
  EXPECT_NE(parse_error(image(one("F32", "[2,2]", "[0,24]"), d24)).find("expected 16"),
            std::string::npos);
  // Overlapping tensors.
  const std::string ov = R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                         R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})";
  EXPECT_NE(parse_error(image(ov, d24)).find("overlap"), std::string::npos);
  // Unsupported and unknown dtypes, malformed fields.
  EXPECT_NE(parse_error(image(one("I64", "[3]", "[0,24]"), d24)).find("I64, which is not"),
            std::string::npos);
  EXPECT_NE(parse_error(image(one("F8_E4M3", "[3]", "[0,3]"), d24)).find("not supported"),
            std::string::npos);
  EXPECT_FALSE(parse_error(image(one("F32", "[-1]", "[0,4]"), d24)).empty());
  EXPECT_FALSE(parse_error(image(one("F32", "[1.5]", "[0,4]"), d24)).empty());
  EXPECT_FALSE(parse_error(image(one("F32", "[1]", "[0]"), d24)).empty());
  EXPECT_FALSE(parse_error(image(one("F32", "[1]", "[0,4.0]"), d24)).empty());
  EXPECT_FALSE(parse_error(image(R"({"t":{"shape":[1],"data_offsets":[0,4]}})", d24)).empty());
  EXPECT_FALSE(parse_error(image(R"({"t":5})", d24)).empty());
  EXPECT_FALSE(parse_error(image(R"({"__metadata__":{"a":1}})", d24)).empty());
  // Shape products that overflow 64 bits.
  EXPECT_NE(
      parse_error(image(one("F32", "[4294967296,4294967296]", "[0,0]"), d24)).find("overflow"),
      std::string::npos);
  // A zero-size tensor anywhere is fine.
  EXPECT_EQ(parse_error(image(one("F32", "[0,5]", "[24,24]"), d24)), "");
}

struct TempDir {
  std::filesystem::path p;
  explicit TempDir(const std::string& name)
      : p(std::filesystem::temp_directory_path() /
          ("g4_st_" + name + "_" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(p);
    std::filesystem::create_directories(p);
  }
  ~TempDir() { std::filesystem::remove_all(p); }
  void write(const std::string& name, const std::vector<uint8_t>& b) const {
    std::ofstream(p / name, std::ios::binary)
        .write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
  }
  void write(const std::string& name, const std::string& s) const { std::ofstream(p / name) << s; }
};

TEST(Safetensors, ShardedCheckpoint) {
  TempDir d("shards");
  d.write("s1.safetensors", image(one("F32", "[2]", "[0,8]"), floats({1, 2})));
  d.write("s2.safetensors",
          image(R"({"u":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", floats({3})));
  d.write("model.safetensors.index.json",
          R"({"metadata":{},"weight_map":{"t":"s1.safetensors","u":"s2.safetensors"}})");
  auto c = SafetensorsCheckpoint::open_dir(d.p.string());
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c.value()->tensors().size(), 2u);
  ASSERT_NE(c.value()->tensor("u"), nullptr);
  // A tensor in a shard the index does not name for it; a listed tensor that is missing;
  // a missing shard; a shard path that leaves the directory.
  d.write("model.safetensors.index.json",
          R"({"weight_map":{"t":"s2.safetensors","u":"s2.safetensors"}})");
  EXPECT_FALSE(SafetensorsCheckpoint::open_dir(d.p.string()).ok());
  d.write("model.safetensors.index.json",
          R"({"weight_map":{"t":"s1.safetensors","u":"s2.safetensors","v":"s2.safetensors"}})");
  EXPECT_NE(SafetensorsCheckpoint::open_dir(d.p.string()).error().find("'v'"), std::string::npos);
  d.write("model.safetensors.index.json", R"({"weight_map":{"t":"s3.safetensors"}})");
  EXPECT_FALSE(SafetensorsCheckpoint::open_dir(d.p.string()).ok());
  d.write("model.safetensors.index.json", R"({"weight_map":{"t":"../s1.safetensors"}})");
  EXPECT_NE(SafetensorsCheckpoint::open_dir(d.p.string()).error().find("bad shard"),
            std::string::npos);
  d.write("model.safetensors.index.json", R"({"weight_map":[]})");
  EXPECT_FALSE(SafetensorsCheckpoint::open_dir(d.p.string()).ok());
  std::filesystem::remove(d.p / "model.safetensors.index.json");
  EXPECT_NE(SafetensorsCheckpoint::open_dir(d.p.string()).error().find("no model.safetensors"),
            std::string::npos);
}

}  // namespace
}  // namespace g4
