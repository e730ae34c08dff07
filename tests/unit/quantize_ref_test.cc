// g4's reference quantisers against the bytes libggml writes for the same f32 rows
// (fixture: tests/unit/data/quant_rows.gguf, written by scripts/gen_quant_row_fixtures.py;
// the exact command is in its "fixture.command" key). Every block must be identical: the
// quantisers follow ggml's operand order and g4 builds with -ffp-contract=off.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "io/gguf.h"
#include "kernels/quant.h"
#include "kernels/quantize_ref.h"

namespace g4 {
namespace {

std::unique_ptr<GgufFile> open_fixture() {
  auto f = GgufFile::open(std::string(G4_SOURCE_DIR) + "/tests/unit/data/quant_rows.gguf");
  EXPECT_TRUE(f.ok()) << f.error();
  return f.ok() ? std::move(f).value() : nullptr;
}

void check_type(const char* tname, DType t) {
  auto f = open_fixture();
  ASSERT_NE(f, nullptr);
  size_t n_cases = 0;
  for (const auto& in : f->tensors()) {
    if (in.name.rfind("in.", 0) != 0) continue;
    const std::string cname = in.name.substr(3);
    const GgufTensor* want = f->tensor(std::string(tname) + "." + cname);
    ASSERT_NE(want, nullptr) << tname << "." << cname;
    ASSERT_EQ(want->type, t);
    ASSERT_EQ(in.type, DType::kF32);
    const int64_t n = in.ne[0];
    const size_t rb = row_bytes(t, n);
    const size_t bb = size_t(info(t).block_bytes);
    std::vector<float> x(static_cast<size_t>(n));
    std::vector<uint8_t> got(rb);
    size_t bad_blocks = 0, blocks = 0;
    for (int64_t r = 0; r < in.rows(); ++r) {
      std::memcpy(x.data(), in.data + size_t(r) * size_t(n) * 4, size_t(n) * 4);
      quantize_row(t, x.data(), got.data(), n);
      const uint8_t* ref = want->data + size_t(r) * rb;
      for (size_t b = 0; b < rb / bb; ++b, ++blocks) {
        if (std::memcmp(got.data() + b * bb, ref + b * bb, bb) != 0) {
          if (++bad_blocks <= 3)
            ADD_FAILURE() << tname << " case " << cname << " row " << r << " block " << b
                          << " differs from ggml";
        }
      }
    }
    EXPECT_EQ(bad_blocks, 0u) << tname << " " << cname << ": " << bad_blocks << "/" << blocks;
    ++n_cases;
  }
  EXPECT_GE(n_cases, 5u);
}

TEST(QuantizeRef, F16MatchesGgml) {
  check_type("f16", DType::kF16);
}
TEST(QuantizeRef, BF16MatchesGgml) {
  check_type("bf16", DType::kBF16);
}
TEST(QuantizeRef, Q8_0MatchesGgml) {
  check_type("q8_0", DType::kQ8_0);
}
TEST(QuantizeRef, Q4_0MatchesGgml) {
  check_type("q4_0", DType::kQ4_0);
}
TEST(QuantizeRef, Q5_0MatchesGgml) {
  check_type("q5_0", DType::kQ5_0);
}
TEST(QuantizeRef, Q4_KMatchesGgml) {
  check_type("q4_k", DType::kQ4_K);
}
TEST(QuantizeRef, Q6_KMatchesGgml) {
  check_type("q6_k", DType::kQ6_K);
}

// Round trip: dequantising what we wrote stays within each format's quantisation step.
TEST(QuantizeRef, RoundTripErrorWithinStep) {
  std::vector<float> x(512), y(512);
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(int(i * 37 % 101) - 50) / 25.0f;
  const struct {
    DType t;
    float tol;                         // max |x| = 2
  } cases[] = {{DType::kF16, 1e-3f},   // half an ulp of fp16 at 2: 2^-10
               {DType::kBF16, 1e-2f},  // half an ulp of bf16 at 2: 2^-7
               {DType::kQ8_0, 0.01f},  // half a step, step = 2/127
               // Q4_0/Q5_0 map the signed max to -8/-16, so the other extreme clamps at +7/+15
               // steps: up to one whole step (2/8, 2/16) off.
               {DType::kQ4_0, 0.26f},
               {DType::kQ5_0, 0.13f},
               // 32-element sub-blocks spanning at most 4: step <= 4/15, half of it plus the 6-bit
               // rounding of the sub-block scale and min.
               {DType::kQ4_K, 0.2f},
               // 16-element sub-blocks, step ~2/32, half of it plus the 8-bit scale rounding.
               {DType::kQ6_K, 0.05f}};
  for (const auto& c : cases) {
    std::vector<uint8_t> q(row_bytes(c.t, 512));
    quantize_row(c.t, x.data(), q.data(), 512);
    dequantize_row(c.t, q.data(), y.data(), 512);
    for (size_t i = 0; i < x.size(); ++i)
      ASSERT_NEAR(y[i], x[i], c.tol) << info(c.t).name << " element " << i;
  }
}

}  // namespace
}  // namespace g4
