// GGUF reader: the worked example of formats.md §6.2 and its negative variants, plus
// truncation and bit flips of a valid image (every failure must be a clean error).
#include <gtest/gtest.h>

#include <random>

#include "gguf_builder.h"
#include "io/gguf.h"

namespace g4 {

using test::GgufBuilder;

// formats.md §6.2: v3, KVs alignment/architecture/t.arr, tensors a (F32 {4}) and b (Q8_0 {32,2}).
static GgufBuilder example(uint32_t version = 3, uint32_t align_type = 4, uint32_t align = 32,
                           int64_t b_ne0 = 32, uint32_t b_type = 8, uint64_t b_off = 32,
                           bool dup_key = false) {
  GgufBuilder g;
  g.header(version, 2, 3);
  g.str("general.alignment");
  g.put<uint32_t>(align_type);
  g.put<uint32_t>(align);
  g.kv_str(dup_key ? "general.alignment" : "general.architecture", "gemma3");
  g.kv_arr_i32("t.arr", {-1, 0, 7});
  g.tensor("a", {4}, 0, 0);
  g.tensor("b", {b_ne0, 2}, b_type, b_off);
  g.pad(32);
  g.bytes(16 + 16);  // a + pad
  g.bytes(68);       // b
  g.pad(32);
  return g;
}

TEST(Gguf, WorkedExample) {
  auto g = example();
  EXPECT_EQ(g.b.size(), 352u);
  auto f = GgufFile::parse(g.b.data(), g.b.size());
  ASSERT_TRUE(f.ok()) << f.error();
  EXPECT_EQ(f.value()->data_offset(), 224u);
  ASSERT_EQ(f.value()->tensors().size(), 2u);
  EXPECT_EQ(f.value()->tensor("a")->data - g.b.data(), 224);
  EXPECT_EQ(f.value()->tensor("b")->data - g.b.data(), 256);
  EXPECT_EQ(f.value()->tensor("b")->nbytes, 68u);
  EXPECT_EQ(*f.value()->get_string("general.architecture").value(), "gemma3");
  const GgufValue* arr = f.value()->find("t.arr");
  ASSERT_NE(arr, nullptr);
  EXPECT_EQ(arr->count, 3u);
  EXPECT_EQ(arr->to_string(), "i32[3] [-1, 0, 7]");
}

static std::string parse_error(const std::vector<uint8_t>& b) {
  auto f = GgufFile::parse(b.data(), b.size());
  return f.ok() ? "" : f.error();
}

TEST(Gguf, RejectsBadVariants) {
  EXPECT_NE(parse_error(example(1).b).find("version 1"), std::string::npos);
  EXPECT_NE(parse_error(example(0x03000000).b).find("byte-swapped"), std::string::npos);
  EXPECT_NE(parse_error(example(3, 4, 48).b).find("power of two"), std::string::npos);
  EXPECT_NE(parse_error(example(3, 5, 32).b).find("must be u32"), std::string::npos);
  EXPECT_NE(parse_error(example(3, 4, 32, 32, 8, 40).b).find("offset"), std::string::npos);
  EXPECT_NE(parse_error(example(3, 4, 32, 33).b).find("block size"), std::string::npos);
  EXPECT_NE(parse_error(example(3, 4, 32, 32, 4).b).find("unknown type"), std::string::npos);
  EXPECT_NE(parse_error(example(3, 4, 32, 32, 8, 32, true).b).find("duplicate"), std::string::npos);
}

TEST(Gguf, StringPastEndOfFile) {
  GgufBuilder g;
  g.header(3, 0, 1);
  g.str("general.name");
  g.put<uint32_t>(8);
  g.put<uint64_t>(1000);  // claims 1000 bytes
  g.bytes(10, 'x');
  EXPECT_NE(parse_error(g.b).find("truncated"), std::string::npos);
}

TEST(Gguf, LyingCounts) {
  GgufBuilder g;
  g.header(3, int64_t(1) << 40, 0);
  EXPECT_NE(parse_error(g.b).find("implausible"), std::string::npos);
  GgufBuilder h;
  h.header(3, 0, -5);
  EXPECT_NE(parse_error(h.b).find("implausible"), std::string::npos);
}

TEST(Gguf, EveryTruncationIsAnError) {
  // Bytes 0..323 hold the header, metadata and both tensors' data (b ends at 256 + 68);
  // the trailing padding is optional, so any cut before byte 324 must fail.
  const auto g = example();
  for (size_t n = 0; n < 324; ++n) {
    std::vector<uint8_t> t(g.b.begin(), g.b.begin() + long(n));
    auto f = GgufFile::parse(t.data(), t.size());
    EXPECT_FALSE(f.ok()) << "truncated to " << n << " bytes was accepted";
  }
}

TEST(Gguf, BitFlipsNeverCrash) {
  const auto g = example();
  std::mt19937 rng(7);
  for (int it = 0; it < 3000; ++it) {
    auto b = g.b;
    const int flips = 1 + int(rng() % 4);
    for (int k = 0; k < flips; ++k) b[rng() % 224] ^= uint8_t(1u << (rng() % 8));
    auto f = GgufFile::parse(b.data(), b.size());
    if (f.ok()) {
      for (const auto& t : f.value()->tensors()) {
        EXPECT_LE(t.data + t.nbytes, b.data() + b.size());
      }
    } else {
      EXPECT_FALSE(f.error().empty());
    }
  }
}

}  // namespace g4
