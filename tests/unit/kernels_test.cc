// Kernel tests. Dequantisation expectations are the worked examples of formats.md §6
// (cross-checked there against gguf-py's independent numpy dequantizers). SIMD paths are
// compared with the scalar reference over odd sizes and misaligned buffers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/fp16.h"
#include "kernels/attention.h"
#include "kernels/dot_simd.h"
#include "kernels/ops.h"
#include "kernels/quant.h"
#include "kernels_test_util.h"

namespace g4 {

static double sum(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += x;
  return s;
}

TEST(Dequant, Q4_0) {
  BlockQ4_0 b;
  b.d = 0x3800;
  for (int i = 0; i < 16; ++i) b.qs[i] = uint8_t(i | ((15 - i) << 4));
  std::vector<float> y(32);
  dequantize_row(DType::kQ4_0, &b, y.data(), 32);
  EXPECT_EQ(y[0], -4.f);
  EXPECT_EQ(y[1], -3.5f);
  EXPECT_EQ(y[15], 3.5f);
  EXPECT_EQ(y[16], 3.5f);
  EXPECT_EQ(y[31], -4.f);
  EXPECT_EQ(sum(y), -8.0);
}

TEST(Dequant, Q8_0) {
  BlockQ8_0 b;
  b.d = 0x2C00;
  for (int i = 0; i < 32; ++i) b.qs[i] = int8_t(8 * i - 128);
  std::vector<float> y(32);
  dequantize_row(DType::kQ8_0, &b, y.data(), 32);
  EXPECT_EQ(y[0], -8.f);
  EXPECT_EQ(y[1], -7.5f);
  EXPECT_EQ(y[16], 0.f);
  EXPECT_EQ(y[31], 7.5f);
  EXPECT_EQ(sum(y), -8.0);
}

TEST(Dequant, Q5_0) {
  BlockQ5_0 b;
  b.d = 0x3C00;
  const uint8_t qh[4] = {0x0F, 0xF0, 0x55, 0xAA};
  std::memcpy(b.qh, qh, 4);
  for (int i = 0; i < 16; ++i) b.qs[i] = uint8_t(i | ((15 - i) << 4));
  std::vector<float> y(32);
  dequantize_row(DType::kQ5_0, &b, y.data(), 32);
  const float expect[32] = {0,  1,  2,  3,  -12, -11, -10, -9, -8, -7, -6,  -5, 12,  13, 14,  15,
                            15, -2, 13, -4, 11,  -6,  9,   -8, -9, 6,  -11, 4,  -13, 2,  -15, 0};
  for (int i = 0; i < 32; ++i) EXPECT_EQ(y[i], expect[i]) << i;
}

static BlockQ4_K make_q4k() {
  BlockQ4_K b;
  b.d = 0x3C00;
  b.dmin = 0x3800;
  const uint8_t sc[12] = {0x01, 0x83, 0x45, 0xC7, 0x08, 0x44, 0x3F, 0x80, 0x21, 0x7C, 0xF0, 0x0E};
  std::memcpy(b.scales, sc, 12);
  for (int i = 0; i < 128; ++i) b.qs[i] = uint8_t((37 * i + 11) & 255);
  return b;
}

TEST(Dequant, Q4_K) {
  const BlockQ4_K b = make_q4k();
  const uint8_t pairs[8][2] = {{1, 8}, {3, 4},   {5, 63},  {7, 0},
                               {1, 2}, {44, 23}, {16, 15}, {62, 32}};
  for (int s = 0; s < 8; ++s) {
    uint8_t sc, m;
    get_scale_min_k4(s, b.scales, &sc, &m);
    EXPECT_EQ(sc, pairs[s][0]);
    EXPECT_EQ(m, pairs[s][1]);
  }
  std::vector<float> y(256);
  dequantize_row(DType::kQ4_K, &b, y.data(), 256);
  EXPECT_EQ(y[0], 7.f);
  EXPECT_EQ(y[1], -4.f);
  EXPECT_EQ(y[31], 2.f);
  EXPECT_EQ(y[32], -2.f);
  EXPECT_EQ(y[63], 22.f);
  EXPECT_EQ(y[64], 23.5f);
  EXPECT_EQ(y[160], 164.5f);
  EXPECT_EQ(y[163], 472.5f);
  EXPECT_EQ(y[191], 516.5f);
  EXPECT_EQ(y[255], 356.f);
  EXPECT_EQ(sum(y), 30600.0);
}

TEST(Dequant, Q6_K) {
  BlockQ6_K b;
  for (int i = 0; i < 128; ++i) b.ql[i] = uint8_t((37 * i + 11) & 255);
  for (int i = 0; i < 64; ++i) b.qh[i] = uint8_t((53 * i + 7) & 255);
  for (int i = 0; i < 16; ++i) b.scales[i] = int8_t(13 * i - 100);
  b.d = 0x2800;
  std::vector<float> y(256);
  dequantize_row(DType::kQ6_K, &b, y.data(), 256);
  EXPECT_EQ(y[0], -84.375f);
  EXPECT_EQ(y[1], 100.f);
  EXPECT_EQ(y[32], 11.5625f);
  EXPECT_EQ(y[64], 48.f);
  EXPECT_EQ(y[96], 15.125f);
  EXPECT_EQ(y[127], 3.9375f);
  EXPECT_EQ(y[128], 3.375f);
  EXPECT_EQ(y[200], -43.75f);
  EXPECT_EQ(y[255], -77.1875f);
  EXPECT_EQ(sum(y), -122.125);
}

TEST(ActQuant, Q8_0_X86Rule) {
  std::vector<float> x(32, 0.f);
  const float head[8] = {127, 2.5, -2.5, 3.5, 0.5, -0.5, 1.5, -126.5};
  std::memcpy(x.data(), head, sizeof head);
  BlockQ8_0 q;
  quantize_activation(DType::kQ8_0, x.data(), &q, 32);
  EXPECT_EQ(q.d, 0x3C00);
  const int expect[8] = {127, 2, -2, 4, 0, 0, 2, -126};  // half to even (AVX path)
  for (int i = 0; i < 8; ++i) EXPECT_EQ(q.qs[i], expect[i]) << i;
}

TEST(ActQuant, Q8_K) {
  std::vector<float> x(256);
  for (int j = 0; j < 256; ++j) x[size_t(j)] = float(j - 100) / 50.f;
  BlockQ8_K q;
  quantize_activation(DType::kQ8_K, x.data(), &q, 256);
  EXPECT_NEAR(q.d, -0.0244094487f, 1e-9);
  EXPECT_EQ(q.qs[0], 82);
  EXPECT_EQ(q.qs[100], 0);
  EXPECT_EQ(q.qs[101], -1);
  EXPECT_EQ(q.qs[125], -20);
  EXPECT_EQ(q.qs[255], -127);
  EXPECT_EQ(q.bsums[0], 1212);
  EXPECT_EQ(q.bsums[15], -1934);
}

TEST(VecDot, Q4_0_LlamaCppPath) {
  BlockQ4_0 b;
  b.d = 0x3800;
  for (int i = 0; i < 16; ++i) b.qs[i] = uint8_t(i | ((15 - i) << 4));
  std::vector<float> a(32);
  for (int j = 0; j < 32; ++j) a[size_t(j)] = float((j % 7) - 3) * 0.37f;
  BlockQ8_0 qa;
  quantize_activation(DType::kQ8_0, a.data(), &qa, 32);
  EXPECT_EQ(qa.d, 0x207A);
  EXPECT_FLOAT_EQ(vec_dot_ref(DType::kQ4_0, 32, &b, &qa), 8.32798004f);
}

class SimdVsRef : public ::testing::TestWithParam<DType> {};

TEST_P(SimdVsRef, MatchesScalarReference) {  // AVX2 (AVX-512: kernels_avx512_test.cc)
  if (!cpu_has_avx2()) GTEST_SKIP() << "no AVX2 on this CPU";
  const DType t = GetParam();
  std::mt19937 rng(1234);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int block = info(t).block == 1 ? 32 : info(t).block;
  for (int64_t n : {int64_t(block), int64_t(3 * block), int64_t(7 * block), int64_t(20 * block)}) {
    if (t == DType::kF32 || t == DType::kF16 || t == DType::kBF16) n += 5;  // odd sizes
    // Offsets that break vector alignment: whole elements for float rows, bytes for blocks.
    const int step = t == DType::kF32 ? 4 : (t == DType::kF16 || t == DType::kBF16) ? 4 : 1;
    for (int misalign = 0; misalign < 3 * step; misalign += step) {
      const auto w = test::random_row(t, n, rng);
      std::vector<float> x(static_cast<size_t>(n));
      for (auto& v : x) v = nd(rng);
      const DType vt = vec_dot_type(t);
      std::vector<uint8_t> act(row_bytes(vt, n) + 16), wbuf(w.size() + 16);
      quantize_activation(vt, x.data(), act.data() + misalign, n);
      std::memcpy(wbuf.data() + misalign, w.data(), w.size());
      const float ref = vec_dot_ref(t, n, wbuf.data() + misalign, act.data() + misalign);
      const float simd =
          vec_dot_for(t, Isa::kAvx2)(n, wbuf.data() + misalign, act.data() + misalign);
      // Integer block sums are exact; only the float accumulation order differs. Bound the
      // reordering error by n_terms * eps * sum|terms| using dequantised values.
      std::vector<float> wd(static_cast<size_t>(n)), ad(static_cast<size_t>(n));
      dequantize_row(t, wbuf.data() + misalign, wd.data(), n);
      if (vt == DType::kQ8_K || vt == DType::kQ8_0) {
        // dequantise activations too (Q8_K: d * q)
        if (vt == DType::kQ8_0)
          dequantize_row(DType::kQ8_0, act.data() + misalign, ad.data(), n);
        else {
          const auto* qb = reinterpret_cast<const BlockQ8_K*>(act.data() + misalign);
          for (int64_t j = 0; j < n; ++j)
            ad[size_t(j)] = qb[j / 256].d * float(qb[j / 256].qs[j % 256]);
        }
      } else {
        dequantize_row(vt, act.data() + misalign, ad.data(), n);
      }
      double abs_sum = 0;
      for (int64_t j = 0; j < n; ++j) abs_sum += std::fabs(double(wd[size_t(j)]) * ad[size_t(j)]);
      const double tol = 2.0 * double(n / block + 8) * FLT_EPSILON * abs_sum + 1e-30;
      EXPECT_NEAR(simd, ref, tol) << info(t).name << " n=" << n << " misalign=" << misalign;
    }
  }
}

class FourRow : public ::testing::TestWithParam<DType> {};

TEST_P(FourRow, BitIdenticalToOneRowKernel) {
  const DType t = GetParam();
  if (!cpu_has_avx2()) GTEST_SKIP() << "no AVX2 on this CPU";
  const VecDot4Fn dot4 = vec_dot4_avx2(t);
  ASSERT_NE(dot4, nullptr);
  std::mt19937 rng(99);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int64_t n = 5 * int64_t(info(t).block);
  const auto w = test::random_row(t, n, rng);
  const DType vt = vec_dot_type(t);
  std::vector<std::vector<uint8_t>> acts(4, std::vector<uint8_t>(row_bytes(vt, n)));
  const void* ptrs[4];
  for (int k = 0; k < 4; ++k) {
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& v : x) v = nd(rng) * float(k + 1);
    quantize_activation(vt, x.data(), acts[size_t(k)].data(), n);
    ptrs[k] = acts[size_t(k)].data();
  }
  float four[4];
  dot4(n, w.data(), ptrs, four);
  for (int k = 0; k < 4; ++k) {
    EXPECT_EQ(four[k], vec_dot_for(t, Isa::kAvx2)(n, w.data(), ptrs[k]))
        << info(t).name << " row " << k;
  }
}

INSTANTIATE_TEST_SUITE_P(QuantTypes, FourRow,
                         ::testing::Values(DType::kQ4_0, DType::kQ5_0, DType::kQ8_0, DType::kQ4_K,
                                           DType::kQ6_K),
                         [](const ::testing::TestParamInfo<DType>& i) {
                           return std::string(g4::info(i.param).name);
                         });

INSTANTIATE_TEST_SUITE_P(AllTypes, SimdVsRef,
                         ::testing::Values(DType::kF32, DType::kF16, DType::kBF16, DType::kQ4_0,
                                           DType::kQ5_0, DType::kQ8_0, DType::kQ4_K, DType::kQ6_K),
                         [](const ::testing::TestParamInfo<DType>& i) {
                           return std::string(g4::info(i.param).name);
                         });

TEST(Ops, RmsNormAndGelu) {
  std::vector<float> x{1, 2, 3, 4}, w{1, 1, 2, 0.5f}, y(4);
  rmsnorm(x.data(), w.data(), y.data(), 4, 0.f);
  const float s = 1.f / std::sqrt(7.5f);
  EXPECT_NEAR(y[0], 1 * s, 1e-6);
  EXPECT_NEAR(y[2], 6 * s, 1e-6);
  EXPECT_NEAR(y[3], 2 * s, 1e-6);
  // Values of the tanh formula in float64: python3 -c "import math; g=lambda x: 0.5*x*(1+math.tanh(
  // math.sqrt(2/math.pi)*(x+0.044715*x**3))); print(g(1.0), g(-2.0))"
  EXPECT_NEAR(gelu_tanh(1.0f), 0.8411919906f, 1e-6);
  EXPECT_NEAR(gelu_tanh(-2.0f), -0.0454023059f, 1e-6);
}

// softmax's exponentials: the AVX2 lanes (whole groups of 8) and the scalar tail give
// softmax_exp's bits, which are exp's correctly rounded float (0 below -87).
TEST(Ops, SoftmaxExpSameBitsInLanesAndTail) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> ud(-95.f, 0.f);
  float worst_ulp = 0;
  for (int rep = 0; rep < 2000; ++rep) {
    const int n = 1 + rep % 19;  // lanes, tail, or both
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& v : x) v = rep % 3 == 0 ? ud(rng) * 0.05f : ud(rng);
    x[static_cast<size_t>(rep % n)] = 0.f;  // the maximum: exp(x - max) = exp(x)
    std::vector<float> e(x.size());
    double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int i = 0; i < n; ++i) {
      e[size_t(i)] = softmax_exp(x[size_t(i)]);
      lane[i % 8] += double(e[size_t(i)]);
      const double want = std::exp(double(x[size_t(i)]));
      if (x[size_t(i)] < -87.f) {
        EXPECT_EQ(e[size_t(i)], 0.f);
      } else if (want > 1e-30) {
        worst_ulp = std::max(worst_ulp, float(std::fabs(e[size_t(i)] - want) /
                                              (std::nextafter(float(want), 2.f) - float(want))));
      }
    }
    const double sum =
        ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
    const float inv = float(1.0 / sum);
    std::vector<float> got = x;
    float st[2];
    softmax_stats(got.data(), n, st);
    for (int i = 0; i < n; ++i)
      ASSERT_EQ(got[size_t(i)], e[size_t(i)] * inv)
          << "n " << n << " i " << i << " x " << x[size_t(i)];
    ASSERT_EQ(st[0], 0.f);
    ASSERT_EQ(st[1], float(sum));
  }
  EXPECT_LE(worst_ulp, 0.51f);  // expf's correctly rounded value (to double's ~1e-14)
  // A NaN score stays NaN in the lanes and in the tail (as std::exp's would), never a weight.
  for (int n : {8, 9}) {
    std::vector<float> x(size_t(n), -1.f);
    x[0] = 0.f;
    x[size_t(n - 1)] = NAN;
    softmax_stats(x.data(), n, nullptr);
    EXPECT_TRUE(std::isnan(x[size_t(n - 1)])) << n;
  }
}

// softcap: the lanes give the scalar twin's bits at every position, tanh rounded to float
// equals the true tanh's (double's error never reaches a float rounding on this sample),
// +-cap at the ends, NaN stays NaN.
TEST(Ops, SoftcapSameBitsInLanesAndTail) {
  std::mt19937 rng(12);
  std::uniform_real_distribution<float> ud(-1.f, 1.f);
  const float caps[] = {30.f, 50.f};
  float worst_ulp = 0;
  int64_t rounded_differently = 0, total = 0;
  for (int rep = 0; rep < 3000; ++rep) {
    const float cap = caps[rep % 2];
    const int n = 1 + rep % 37;  // lanes, tail, or both
    std::vector<float> z(static_cast<size_t>(n));
    // Logits from tiny to far past the cap (scale 1e-6 .. 1e3).
    for (auto& v : z) v = ud(rng) * std::pow(10.f, float(rep % 10) - 6.f);
    std::vector<float> got = z;
    softcap_inplace(got.data(), n, cap);
    for (int i = 0; i < n; ++i) {
      const float x = z[size_t(i)] / cap;
      ASSERT_EQ(got[size_t(i)], softcap(z[size_t(i)], cap)) << "n " << n << " i " << i;
      // The true tanh rounded to float, then the same multiply by cap.
      const float want = cap * float(std::tanh(double(x)));
      const float ulp = std::nextafter(std::fabs(want), INFINITY) - std::fabs(want);
      worst_ulp = std::max(worst_ulp, std::fabs(got[size_t(i)] - want) / ulp);
      rounded_differently += want != got[size_t(i)];
      ++total;
    }
  }
  // Fixed seed: every one of the values equals the true tanh rounded (measured), so the
  // gate is exact; a change to the series or the reduction shows here first.
  EXPECT_EQ(worst_ulp, 0.0f);
  EXPECT_EQ(rounded_differently, 0) << total;
  for (int n : {8, 9}) {
    std::vector<float> z(size_t(n), 1e9f);
    z[0] = -INFINITY;
    z[1] = INFINITY;
    z[size_t(n - 1)] = NAN;
    softcap_inplace(z.data(), n, 30.f);
    EXPECT_EQ(z[0], -30.f);
    EXPECT_EQ(z[1], 30.f);
    EXPECT_EQ(z[2], 30.f);
    EXPECT_TRUE(std::isnan(z[size_t(n - 1)])) << n;
  }
}

TEST(Ops, RopeRotatesPairs) {
  std::vector<float> x{1, 0, 0, 1};  // n_rot 4: pairs (0,2), (1,3)
  const float inv_freq[2] = {1.f, 0.01f};
  rope_neox(x.data(), 4, inv_freq, 1.0);
  EXPECT_NEAR(x[0], std::cos(1.f), 1e-6);
  EXPECT_NEAR(x[2], std::sin(1.f), 1e-6);
  EXPECT_NEAR(x[1], -std::sin(0.01f), 1e-6);
  EXPECT_NEAR(x[3], std::cos(0.01f), 1e-6);
}

TEST(Attention, SlidingWindowSeesExactlyWindowKeys) {
  // One head, head_dim 2, ring of capacity 6 with window 3: query at pos 7 sees 5, 6, 7.
  AttentionArgs a{1, 1, 2, 6, 3, 0.f};
  std::vector<uint16_t> k(12), v(12);
  for (int p = 0; p < 8; ++p) {  // positions 0..7 written into slots p % 6
    const size_t s = size_t(p % 6);
    k[2 * s] = fp32_to_fp16(0.f);
    k[2 * s + 1] = fp32_to_fp16(0.f);
    v[2 * s] = fp32_to_fp16(float(p));
    v[2 * s + 1] = fp32_to_fp16(1.f);
  }
  const float q[2] = {0, 0};
  float out[2], scores[8];
  attend_one(a, q, k.data(), v.data(), 7, 0, 1, out, scores);
  EXPECT_NEAR(out[0], 6.0f, 1e-5);  // uniform over {5, 6, 7}
  EXPECT_NEAR(out[1], 1.0f, 1e-6);
}

}  // namespace g4
