// Expected values: formats.md §6.1 (cross-checked there against gguf-py / numpy).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/fp16.h"

namespace g4 {

TEST(Fp16, ToFloat) {
  EXPECT_EQ(fp16_to_fp32(0x3C00), 1.0f);
  EXPECT_EQ(fp16_to_fp32(0x7BFF), 65504.0f);
  EXPECT_EQ(fp16_to_fp32(0x0001), 5.96046448e-08f);
  EXPECT_EQ(fp16_to_fp32(0x0400), 6.10351562e-05f);
  EXPECT_EQ(fp16_to_fp32(0xC000), -2.0f);
  EXPECT_EQ(fp16_to_fp32(0x3555), 0.333251953f);
  EXPECT_TRUE(std::isinf(fp16_to_fp32(0x7C00)));
}

TEST(Fp16, FromFloat) {
  EXPECT_EQ(fp32_to_fp16(1.0f / 127.0f), 0x2008);
  EXPECT_EQ(fp32_to_fp16(0.1f), 0x2E66);
  EXPECT_EQ(fp32_to_fp16(65519.0f), 0x7BFF);
  EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7C00);
  EXPECT_EQ(fp32_to_fp16(1e-8f), 0x0000);
}

TEST(Fp16, RoundTripAllFinite) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = fp16_to_fp32(uint16_t(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(fp32_to_fp16(f), uint16_t(h)) << h;
  }
}

static float bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

TEST(Bf16, RoundNearestEven) {
  EXPECT_EQ(fp32_to_bf16(bits(0x3EAAAAAB)), 0x3EAB);
  EXPECT_EQ(fp32_to_bf16(bits(0x3F808000)), 0x3F80);
  EXPECT_EQ(fp32_to_bf16(bits(0x3F818000)), 0x3F82);
  // Embedding scales of gemma-architecture.md §1.1: bf16(sqrt(d)).
  EXPECT_EQ(round_to_bf16(std::sqrt(640.f)), 25.25f);
  EXPECT_EQ(round_to_bf16(std::sqrt(1152.f)), 34.0f);
  EXPECT_EQ(round_to_bf16(std::sqrt(2560.f)), 50.5f);
  EXPECT_EQ(round_to_bf16(std::sqrt(3840.f)), 62.0f);
  EXPECT_EQ(round_to_bf16(std::sqrt(5376.f)), 73.5f);
}

}  // namespace g4
