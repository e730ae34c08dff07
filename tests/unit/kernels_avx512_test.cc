// AVX-512 kernels against the scalar reference (odd block counts, misaligned buffers), the
// packed activation layout against quantize_activation, and batch invariance of every GEMM
// tile width: a token's output must not depend on how many tokens share its matmul or where
// it sits in a tile.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/fp16.h"
#include "kernels/attention.h"
#include "kernels/dot_simd.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "kernels/quant.h"
#include "kernels_test_util.h"

namespace g4 {

namespace {
bool have_avx512() {
  return cpu_has_avx512();
}
std::string type_name(const ::testing::TestParamInfo<DType>& i) {
  return info(i.param).name;
}
}  // namespace

class Avx512VsRef : public ::testing::TestWithParam<DType> {};

TEST_P(Avx512VsRef, MatchesScalarReference) {
  if (!have_avx512()) GTEST_SKIP() << "no AVX-512 VNNI on this CPU";
  const DType t = GetParam();
  const KernelSet ks = kernels_avx512(t);
  ASSERT_NE(ks.dot1, nullptr);
  std::mt19937 rng(4321);
  std::normal_distribution<float> nd(0.f, 1.f);
  const bool flt = t == DType::kF32 || t == DType::kF16 || t == DType::kBF16;
  const int block = flt ? 32 : info(t).block;
  // 1, 3, 7 blocks: odd counts exercise the single-block tail of the paired loops.
  for (int64_t n : {int64_t(block), int64_t(3 * block), int64_t(7 * block), int64_t(20 * block)}) {
    if (flt) n += 5;
    const int step = flt ? 4 : 1;  // float rows (and their f32 activations): whole floats
    for (int misalign = 0; misalign < 3 * step; misalign += step) {
      const auto w = test::random_row(t, n, rng);
      std::vector<float> x(static_cast<size_t>(n));
      for (auto& v : x) v = nd(rng);
      const DType vt = vec_dot_type(t);
      std::vector<uint8_t> ref_act(row_bytes(vt, n)), act(ks.act_bytes(n) + 16),
          wbuf(w.size() + 16);
      quantize_activation(vt, x.data(), ref_act.data(), n);
      ks.prepare(x.data(), act.data() + misalign, n);
      std::memcpy(wbuf.data() + misalign, w.data(), w.size());
      const float ref = vec_dot_ref(t, n, w.data(), ref_act.data());
      const float simd = ks.dot1(n, wbuf.data() + misalign, act.data() + misalign);
      // Integer block sums are exact; only the float accumulation order differs:
      // |error| <= (blocks + lanes) * eps * sum |w_i a_i| (each product enters once).
      const double abs_sum = test::abs_dot(t, w.data(), ref_act.data(), n);
      const double tol = 2.0 * double(n / block + 16) * FLT_EPSILON * abs_sum + 1e-30;
      EXPECT_NEAR(simd, ref, tol) << info(t).name << " n=" << n << " misalign=" << misalign;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, Avx512VsRef,
                         ::testing::Values(DType::kF32, DType::kF16, DType::kBF16, DType::kQ4_0,
                                           DType::kQ5_0, DType::kQ8_0, DType::kQ4_K, DType::kQ6_K),
                         type_name);

// The packed VNNI layout holds exactly the Q8_0 quants and scales of quantize_activation.
TEST(Avx512Packed, SameQuantsAsQ8_0) {
  if (!have_avx512()) GTEST_SKIP() << "no AVX-512 VNNI on this CPU";
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 3.f);
  const int64_t n = 7 * 32;
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = nd(rng);
  x[5] = 0.5f;  // rounding ties appear after scaling in some blocks; zero block below
  for (int j = 64; j < 96; ++j) x[size_t(j)] = 0.f;
  std::vector<BlockQ8_0> ref(size_t(n / 32));
  quantize_activation(DType::kQ8_0, x.data(), ref.data(), n);
  for (DType t : {DType::kQ4_0, DType::kQ5_0, DType::kQ8_0}) {
    const KernelSet ks = kernels_avx512(t);
    std::vector<uint8_t> p(ks.act_bytes(n));
    ks.prepare(x.data(), p.data(), n);
    const int k = t == DType::kQ4_0 ? 8 : t == DType::kQ5_0 ? 16 : 128;
    for (int64_t i = 0; i < n / 32; ++i) {
      for (int j = 0; j < 32; ++j) ASSERT_EQ(int8_t(p[size_t(32 * i + j)]), ref[size_t(i)].qs[j]);
      for (int l = 0; l < 8; ++l) {
        int32_t c;
        float dy;
        std::memcpy(&c, p.data() + n + 4 * (8 * i + l), 4);
        std::memcpy(&dy, p.data() + 2 * n + 4 * (8 * i + l), 4);
        int s = 0;
        for (int j = 0; j < 4; ++j) s += ref[size_t(i)].qs[4 * l + j];
        EXPECT_EQ(c, -k * s);
        EXPECT_EQ(dy, fp16_to_fp32(ref[size_t(i)].d));
      }
    }
  }
}

// The vectorised Q8_K quantiser writes exactly quantize_activation's bytes (ties between
// +max and -max resolve to the first, zero blocks, rounding ties).
TEST(Avx512Packed, SameBytesAsQ8_K) {
  if (!have_avx512()) GTEST_SKIP() << "no AVX-512 VNNI on this CPU";
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.f, 2.f);
  const int64_t n = 5 * 256;
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = nd(rng);
  for (int j = 256; j < 512; ++j) x[size_t(j)] = 0.f;                        // all-zero block
  x[600] = 9.f, x[700] = -9.f;                                               // +max first
  x[900] = -9.5f, x[1000] = 9.5f;                                            // -max first
  for (int j = 1024; j < 1280; ++j) x[size_t(j)] = float(j % 7 - 3) * 0.5f;  // ties
  const KernelSet ks = kernels_avx512(DType::kQ4_K);
  std::vector<uint8_t> got(ks.act_bytes(n)), want(row_bytes(DType::kQ8_K, n));
  ks.prepare(x.data(), got.data(), n);
  quantize_activation(DType::kQ8_K, x.data(), want.data(), n);
  EXPECT_EQ(got, want);
}

// Every tile width and every position in a tile gives the 1-token kernel's bits.
class TileWidths : public ::testing::TestWithParam<DType> {};

TEST_P(TileWidths, BitIdenticalToOneToken) {
  const DType t = GetParam();
  std::mt19937 rng(99);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {
    if (isa == Isa::kAvx512 && !have_avx512()) continue;
    if (isa == Isa::kAvx2 && !cpu_has_avx2()) continue;
    const KernelSet ks = kernels_for(t, isa);
    const int64_t n = 5 * int64_t(info(t).block);
    const auto w = test::random_row(t, n, rng);
    std::vector<std::vector<uint8_t>> acts(8, std::vector<uint8_t>(ks.act_bytes(n)));
    const void* ptrs[8];
    for (int k = 0; k < 8; ++k) {
      std::vector<float> x(static_cast<size_t>(n));
      for (auto& v : x) v = nd(rng) * float(k + 1);
      ks.prepare(x.data(), acts[size_t(k)].data(), n);
      ptrs[k] = acts[size_t(k)].data();
    }
    float out[8];
    for (int width : {4, 8}) {
      const VecDot4Fn f = width == 4 ? ks.dot4 : ks.dot8;
      if (f == nullptr) continue;
      f(n, w.data(), ptrs, out);
      for (int k = 0; k < width; ++k) {
        EXPECT_EQ(out[k], ks.dot1(n, w.data(), ptrs[k]))
            << info(t).name << " " << isa_name(isa) << " width " << width << " row " << k;
      }
    }
  }
}

// matmul over T tokens (tiles of 8, 4 and single tokens, two threads) equals T separate
// one-token matmuls, bit for bit, for every T up to 21.
TEST_P(TileWidths, MatmulBatchInvariant) {
  const DType t = GetParam();
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int64_t in = 3 * int64_t(info(t).block), out = 37;
  std::vector<uint8_t> wdata;
  for (int64_t r = 0; r < out; ++r) {
    const auto row = test::random_row(t, in, rng);
    wdata.insert(wdata.end(), row.begin(), row.end());
  }
  WeightView w{t, wdata.data(), in, out, row_bytes(t, in)};
  ThreadPool pool(2);
  MatmulScratch scratch;
  const int64_t T = 21;
  std::vector<float> x(size_t(T * in));
  for (auto& v : x) v = nd(rng);
  std::vector<float> single(size_t(T * out));
  for (int64_t k = 0; k < T; ++k)
    matmul(pool, w, x.data() + k * in, 1, single.data() + k * out, scratch, best_isa());
  for (int64_t n_tok = 1; n_tok <= T; ++n_tok) {
    for (int64_t first : {int64_t(0), T - n_tok}) {
      std::vector<float> y(size_t(n_tok * out));
      matmul(pool, w, x.data() + first * in, n_tok, y.data(), scratch, best_isa());
      for (int64_t k = 0; k < n_tok; ++k)
        for (int64_t o = 0; o < out; ++o)
          ASSERT_EQ(y[size_t(k * out + o)], single[size_t((first + k) * out + o)])
              << info(t).name << " T=" << n_tok << " token " << first + k << " row " << o;
    }
  }
}

// q/k/v-style groups (mixed types, one job) and gate/up with an epilogue equal separate
// matmuls bit for bit; the epilogue sees every row exactly once.
TEST(MatmulMulti, EqualsSeparateMatmuls) {
  std::mt19937 rng(17);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int64_t in = 256;
  const DType types[3] = {DType::kQ5_0, DType::kQ8_0, DType::kQ4_K};
  const int64_t outs[3] = {48, 17, 33};
  std::vector<std::vector<uint8_t>> data(3);
  std::vector<WeightView> w(3);
  for (int i = 0; i < 3; ++i) {
    for (int64_t r = 0; r < outs[i]; ++r) {
      const auto row = test::random_row(types[i], in, rng);
      data[size_t(i)].insert(data[size_t(i)].end(), row.begin(), row.end());
    }
    w[size_t(i)] = {types[i], data[size_t(i)].data(), in, outs[i], row_bytes(types[i], in)};
  }
  ThreadPool pool(2);
  MatmulScratch scratch;
  for (int64_t T : {int64_t(1), int64_t(13)}) {
    std::vector<float> x(size_t(T * in));
    for (auto& v : x) v = nd(rng);
    std::vector<std::vector<float>> sep(3), grp(3);
    MatmulOut mo[3];
    for (int i = 0; i < 3; ++i) {
      sep[size_t(i)].resize(size_t(T * outs[i]));
      grp[size_t(i)].resize(size_t(T * outs[i]));
      matmul(pool, w[size_t(i)], x.data(), T, sep[size_t(i)].data(), scratch, best_isa());
      mo[i] = {&w[size_t(i)], grp[size_t(i)].data()};
    }
    matmul_multi(pool, mo, 3, x.data(), T, scratch, best_isa(), false);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(sep[size_t(i)], grp[size_t(i)]) << i << " T=" << T;
    // Epilogue: two outputs with equal rows (the first one twice, as gate/up would be).
    std::vector<float> a(size_t(T * outs[0])), b(size_t(T * outs[0]));
    std::vector<int> seen(size_t(outs[0]), 0);
    const auto epi = [&](size_t lo, size_t hi, int) {
      for (size_t r = lo; r < hi; ++r) seen[r]++;
    };
    const RowEpilogue ep(epi);
    const MatmulOut two[2] = {{&w[0], a.data()}, {&w[0], b.data()}};
    matmul_multi(pool, two, 2, x.data(), T, scratch, best_isa(), false, &ep);
    EXPECT_EQ(a, sep[0]);
    EXPECT_EQ(b, sep[0]);
    for (int c : seen) EXPECT_EQ(c, 1);
  }
}

INSTANTIATE_TEST_SUITE_P(QuantTypes, TileWidths,
                         ::testing::Values(DType::kQ4_0, DType::kQ5_0, DType::kQ8_0, DType::kQ4_K,
                                           DType::kQ6_K, DType::kF16, DType::kF32),
                         type_name);

// The vectorised GELU against the libm one. Error budget: tanh = (1 - e) / (1 + e) with e
// from a ~1-ulp exp is off by at most ~3 * 2^-24 absolute, plus libm's own 1 ulp, so
// |gelu(x) - ref| <= 0.5 |x| * 4e-7 (+ one rounding of the product).
TEST(FastGelu, WithinTanhErrorBudget) {
  std::vector<float> x, u;
  for (float v = -12.f; v <= 12.f; v += 0.00731f) x.push_back(v);
  for (float v : {0.f, -0.f, 1e-30f, -1e-30f, 1e-6f, 50.f, -50.f, 100.f, -100.f}) x.push_back(v);
  u.assign(x.size(), 1.f);
  u[3] = -2.5f;
  std::vector<float> g = x;
  geglu_inplace(g.data(), u.data(), int64_t(g.size()), /*fast=*/true);
  for (size_t i = 0; i < x.size(); ++i) {
    const float ref = gelu_tanh(x[i]) * u[i];
    const double tol =
        0.5 * std::fabs(double(x[i]) * u[i]) * 4e-7 + 2 * FLT_EPSILON * std::fabs(ref);
    EXPECT_NEAR(g[i], ref, tol + 1e-38) << "x=" << x[i];
  }
  std::vector<float> slow = x;  // fast = false is the scalar path, exactly
  geglu_inplace(slow.data(), u.data(), int64_t(slow.size()));
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(slow[i], gelu_tanh(x[i]) * u[i]);
}

// The AVX2 GELU gives the AVX-512 one's bits, tails included (n = 1..40 covers every
// remainder of 8 and 16), and over the whole range of the budget test above.
TEST(FastGelu, Avx2BitIdenticalToAvx512) {
  if (best_isa() != Isa::kAvx512) GTEST_SKIP() << "no AVX-512 to compare with";
  std::vector<float> x;
  for (float v = -12.f; v <= 12.f; v += 0.00731f) x.push_back(v);
  for (float v : {0.f, -0.f, 1e-30f, -1e-30f, 1e-6f, 50.f, -50.f, 100.f, -100.f, 1e30f, -1e30f})
    x.push_back(v);
  std::vector<float> u(x.size());
  for (size_t i = 0; i < u.size(); ++i) u[i] = 0.5f + float(i % 7);
  for (int64_t n :
       {int64_t(1), int64_t(7), int64_t(9), int64_t(17), int64_t(40), int64_t(x.size())}) {
    std::vector<float> a(x.begin(), x.begin() + n), b = a;
    geglu_fast(a.data(), u.data(), n, Isa::kAvx512);
    geglu_fast(b.data(), u.data(), n, Isa::kAvx2);
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(a[size_t(i)], b[size_t(i)])
          << "x=" << x[size_t(i)] << " " << a[size_t(i)] << " " << b[size_t(i)];
  }
}

// Angles computed once per token give the same bits as rope_neox.
TEST(Rope, SharedAnglesBitIdentical) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int hd = 256;
  std::vector<float> inv(hd / 2), cs(hd / 2), sn(hd / 2);
  for (int i = 0; i < hd / 2; ++i) inv[size_t(i)] = float(std::pow(10000.0, -2.0 * i / hd));
  for (double pos : {0.0, 1.0, 511.0, 32767.0}) {
    std::vector<float> a(hd), b;
    for (auto& v : a) v = nd(rng);
    b = a;
    rope_neox(a.data(), hd, inv.data(), pos);
    rope_angles(hd, inv.data(), pos, cs.data(), sn.data());
    rope_neox_cs(b.data(), hd, cs.data(), sn.data());
    for (int i = 0; i < hd; ++i) ASSERT_EQ(a[size_t(i)], b[size_t(i)]) << pos << " " << i;
  }
}

// GQA heads sharing widened K/V rows give attend_one's bits, head by head (ring buffer,
// sliding window, softcap, head_dim 256 and a short one).
TEST(Attention, GroupedHeadsBitIdentical) {
  std::mt19937 rng(23);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (int hd : {256, 24, 512, 48}) {
    for (float softcap : {0.f, 50.f}) {
      AttentionArgs a{8, 2, hd, 40, 16, softcap};
      const size_t stride = size_t(a.n_kv_heads) * size_t(hd);
      std::vector<uint16_t> k(size_t(a.capacity) * stride), v(k.size());
      for (auto& x : k) x = fp32_to_fp16(nd(rng));
      for (auto& x : v) x = fp32_to_fp16(nd(rng));
      std::vector<float> q(size_t(a.n_heads) * size_t(hd));
      for (auto& x : q) x = nd(rng) * 0.3f;
      for (int64_t pos : {int64_t(0), int64_t(9), int64_t(37)}) {
        std::vector<float> one(q.size()), grp(q.size());
        std::vector<float> sc(attention_scratch_floats(a, 64));
        attend_one(a, q.data(), k.data(), v.data(), pos, 0, a.n_heads, one.data(), sc.data());
        attend_group(a, q.data(), k.data(), v.data(), pos, 0, a.n_heads, grp.data(), sc.data());
        EXPECT_EQ(one, grp) << "hd " << hd << " pos " << pos;
        attend_group(a, q.data(), k.data(), v.data(), pos, 3, 6, grp.data(), sc.data());  // split
        for (size_t i = 3 * size_t(hd); i < 6 * size_t(hd); ++i) ASSERT_EQ(one[i], grp[i]);
      }
    }
  }
}

}  // namespace g4

namespace g4 {

// A prompt chunk's query block (attend_block: key tiles read once for all of the block's
// rows) gives every token's heads attend_group's bits: ring buffers with and without a
// window, a paged cache, blocks crossing the window's start and key tiles, softcap, groups
// of 1, 2, 4 and 8 heads (whole and split), head sizes 256, 512, 40 (AVX2's pv only).
TEST(Attention, QueryBlocksBitIdenticalToTokenByToken) {
  std::mt19937 rng(29);
  std::normal_distribution<float> nd(0.f, 1.f);
  struct Case {
    int H, Hkv, hd;
    int64_t cap, window;
    bool paged;
  };
  for (const Case& c : {Case{8, 2, 256, 300, 0, false}, Case{4, 1, 256, 300, 0, true},
                        Case{8, 1, 512, 300, 0, true}, Case{6, 3, 40, 300, 0, false},
                        Case{4, 4, 256, 200, 100, false}, Case{8, 2, 256, 160, 70, false}}) {
    for (float softcap : {0.f, 50.f}) {
      AttentionArgs a{c.H, c.Hkv, c.hd, c.cap, c.window, softcap};
      std::vector<int32_t> table;
      if (c.paged) {  // 16-position blocks, scattered
        for (int b = 0; b < int(c.cap / 16); ++b) table.push_back(int32_t((b * 7) % (c.cap / 16)));
        a.blocks = table.data();
        a.block_shift = 4;
      }
      const size_t stride = size_t(c.Hkv) * size_t(c.hd);
      std::vector<uint16_t> k(size_t(c.cap) * stride), v(k.size());
      for (auto& x : k) x = fp32_to_fp16(nd(rng));
      for (auto& x : v) x = fp32_to_fp16(nd(rng));
      const int nq = 13;
      const size_t qd = size_t(c.H) * size_t(c.hd);
      std::vector<float> q(size_t(nq) * qd);
      for (auto& x : q) x = nd(rng) * 0.2f;
      const int64_t max_keys = c.window > 0 ? c.window : c.cap;
      std::vector<float> sc(attention_block_scratch_floats(a, nq, max_keys));
      // Positions: from the start, across tiles of 64 keys, and (windows) past the window.
      for (int64_t p0 : {int64_t(0), int64_t(57), c.window > 0 ? c.cap - nq - 1 : int64_t(250)}) {
        std::vector<float> want(q.size()), got(q.size(), -1.f);
        for (int i = 0; i < nq; ++i)
          attend_group(a, q.data() + size_t(i) * qd, k.data(), v.data(), p0 + i, 0, c.H,
                       want.data() + size_t(i) * qd, sc.data());
        const int group = c.H / c.Hkv;
        for (int step : {group, std::max(1, group / 2)}) {
          for (int h0 = 0; h0 < c.H; h0 += step)
            attend_block(a, q.data(), qd, p0, nq, k.data(), v.data(), h0, h0 + step, got.data(), qd,
                         sc.data());
          ASSERT_EQ(want, got) << "H " << c.H << " Hkv " << c.Hkv << " hd " << c.hd << " window "
                               << c.window << " p0 " << p0 << " heads per call " << step;
        }
      }
    }
  }
}

}  // namespace g4
