// R16-packed weights (kernels/repack.h): the AVX-512 and AVX2 kernels give packed_group_ref's
// bits for every tile width, packed_group_ref agrees with the stored format's scalar dot product
// within the float-reordering bound, the prepared activations are quantize_activation's Q8_0
// values, and matmul over a packed view is batch-invariant.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "core/fp16.h"
#include "core/thread_pool.h"
#include "kernels/dot_simd.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"
#include "kernels/repack.h"
#include "kernels_test_util.h"

namespace g4 {
namespace {

std::vector<uint8_t> random_matrix(DType t, int64_t n, int64_t rows, std::mt19937& rng) {
  std::vector<uint8_t> m;
  for (int64_t r = 0; r < rows; ++r) {
    const auto row = test::random_row(t, n, rng);
    m.insert(m.end(), row.begin(), row.end());
  }
  return m;
}

// Q4_K: the float min M = dmin * m of element i's 32-element sub-block (0 for other types).
double k4_min(DType t, const uint8_t* row, int64_t i) {
  if (t != DType::kQ4_K) return 0;
  const auto* b = reinterpret_cast<const BlockQ4_K*>(row) + i / 256;
  uint16_t mh;
  std::memcpy(&mh, &b->dmin, 2);
  uint8_t sc, m;
  get_scale_min_k4(int(i % 256 / 32), b->scales, &sc, &m);
  return double(fp16_to_fp32(mh)) * m;
}

// Row lookups from the packed copy give dequantize_row's values for every row.
void expect_rows_read_back(const WeightView& w) {
  std::vector<float> wr(static_cast<size_t>(w.in)), wp(static_cast<size_t>(w.in));
  for (int64_t r = 0; r < w.out; ++r) {
    dequantize_row(w.type, w.row(r), wr.data(), w.in);
    dequantize_packed_row(w, r, wp.data());
    ASSERT_EQ(wr, wp) << info(w.type).name << " row " << r;
  }
}

// Activation row k alone, in a tile of 4 (k < 4) and in a tile of 8: ref's bits each time.
void expect_tiles_equal_ref(const PackedKernels& pk, DType t, int64_t n, const uint8_t* grp,
                            const void* const a[8], int k, const float ref[kPackRows]) {
  const int li = int(pack_kind(t)) - 1;
  float o1[kPackRows], o4[4 * kPackRows], o8[8 * kPackRows];
  pk.group[li][0](n, grp, &a[k], o1, 0);
  EXPECT_EQ(std::memcmp(o1, ref, sizeof(o1)), 0) << info(t).name << " n=" << n;
  if (k < 4) {
    pk.group[li][1](n, grp, a, o4, kPackRows);
    EXPECT_EQ(std::memcmp(o4 + k * kPackRows, ref, sizeof(float) * kPackRows), 0) << "tile of 4";
  }
  pk.group[li][2](n, grp, a, o8, kPackRows);
  EXPECT_EQ(std::memcmp(o8 + k * kPackRows, ref, sizeof(float) * kPackRows), 0) << "tile of 8";
}

// The ISAs whose packed kernels this CPU runs (AVX-512 VNNI, AVX2), with their kernels.
std::vector<std::pair<Isa, const PackedKernels*>> packed_isas() {
  std::vector<std::pair<Isa, const PackedKernels*>> v;
  for (Isa isa : {Isa::kAvx512, Isa::kAvx2}) {
    const PackedKernels& pk = packed_kernels(isa);
    if (pk.prepare == nullptr) continue;
    if (isa == Isa::kAvx2 && &pk == &packed_kernels(Isa::kAvx512)) continue;  // the same set
    v.emplace_back(isa, &pk);
  }
  return v;
}

// For every 16-row group of w and activation row k < 8: the scalar reference's 16 values,
// row_check(row, k, value) on each, then every ISA's kernel tiles against the reference's bits.
template <typename F>
void check_groups(const WeightView& w, const void* const a[8], F row_check) {
  const int64_t n = w.in;
  for (int64_t g = 0; g < w.out / kPackRows; ++g) {
    const uint8_t* grp = w.packed + size_t(g) * packed_group_bytes(w.type, n);
    for (int k = 0; k < 8; ++k) {
      float ref[kPackRows];
      packed_group_ref(w.type, n, grp, a[k], ref);
      for (int r = 0; r < kPackRows; ++r) row_check(g * kPackRows + r, k, ref[r]);
      for (const auto& [isa, pk] : packed_isas()) {
        SCOPED_TRACE(isa_name(isa));
        expect_tiles_equal_ref(*pk, w.type, n, grp, a, k, ref);
      }
    }
  }
}

std::vector<float> random_x(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = nd(rng);
  return x;
}

}  // namespace

// G4_ISA=avx2 (the avx2.* ctests) really caps the kernels, so those runs cannot pass by
// running the AVX-512 paths again.
TEST(Isa, EnvironmentCapApplies) {
  const char* cap = std::getenv("G4_ISA");
  if (cap != nullptr && std::strcmp(cap, "scalar") == 0) {
    EXPECT_EQ(best_isa(), Isa::kScalar);
    return;
  }
  if (cap == nullptr || std::strcmp(cap, "avx2") != 0) GTEST_SKIP() << "G4_ISA=avx2 not set";
  ASSERT_TRUE(cpu_has_avx2());
  EXPECT_EQ(best_isa(), Isa::kAvx2);
}

TEST(Repack, CanPackOnlyBlockTypesWithWholeGroups) {
  std::vector<uint8_t> buf(34 * 32);
  WeightView w{DType::kQ8_0, buf.data(), 64, 16, 68};
  EXPECT_TRUE(can_pack(w));
  w.out = 17;
  EXPECT_FALSE(can_pack(w));
  w.out = 16;
  w.type = DType::kQ4_K;  // 64 columns: not whole 256-element super-blocks
  EXPECT_FALSE(can_pack(w));
  w.type = DType::kF32;
  EXPECT_FALSE(can_pack(w));
  w.type = DType::kF16;
  w.in = 48;  // not whole 32-column blocks
  EXPECT_FALSE(can_pack(w));
}

// F16/BF16: rows read back exactly; the reference is within the two chains' rounding of the
// double-precision dot product; the kernels give its bits for tiles of 1, 4 and 8 tokens, and
// matmul gives a token the same bits alone or in a batch of 13.
TEST(PackedFloat, MatchesReferenceBitsAndStoredFormat) {
  std::mt19937 rng(29);
  for (DType t : {DType::kF16, DType::kBF16}) {
    for (int64_t n : {32, 96, 640}) {
      const int64_t rows = 32;
      const auto m = random_matrix(t, n, rows, rng);
      WeightView w{t, m.data(), n, rows, row_bytes(t, n)};
      PackedStore store;
      pack_weight(w, store, 2);
      expect_rows_read_back(w);
      std::vector<float> wr(static_cast<size_t>(n));
      std::vector<std::vector<float>> x(8);
      const void* a[8];
      for (int k = 0; k < 8; ++k) {
        x[size_t(k)] = random_x(n, rng);
        a[k] = x[size_t(k)].data();
      }
      check_groups(w, a, [&](int64_t row, int k, float ref) {
        // 8 FMAs per chain, three adds per block, n/32 blocks: at most 8 + 3 + n/32
        // roundings of eps/2 relative to sum |w x|.
        dequantize_row(t, w.row(row), wr.data(), n);
        double exact = 0, mag = 0;
        for (int64_t i = 0; i < n; ++i) {
          exact += double(wr[size_t(i)]) * double(x[size_t(k)][size_t(i)]);
          mag += std::fabs(double(wr[size_t(i)]) * double(x[size_t(k)][size_t(i)]));
        }
        EXPECT_NEAR(ref, exact, double(11 + n / 32) * FLT_EPSILON / 2 * mag);
      });
      ThreadPool pool(2);
      MatmulScratch scratch;
      const int64_t T = 13;
      std::vector<float> xs(static_cast<size_t>(T * n));
      for (auto& v : xs) v = std::normal_distribution<float>()(rng);
      std::vector<float> yb(static_cast<size_t>(T * rows)), y1(static_cast<size_t>(rows));
      for (const auto& [isa, pk] : packed_isas()) {
        matmul(pool, w, xs.data(), T, yb.data(), scratch, isa);
        for (int64_t tk = 0; tk < T; ++tk) {
          matmul(pool, w, xs.data() + tk * n, 1, y1.data(), scratch, isa);
          EXPECT_EQ(std::memcmp(y1.data(), yb.data() + tk * rows, sizeof(float) * rows), 0)
              << info(t).name << " token " << tk << " " << isa_name(isa);
        }
      }
    }
  }
}

TEST(Repack, StoreAlignsAndGrows) {
  PackedStore s(1000);
  for (size_t n : {size_t(1), size_t(63), size_t(5000), size_t(3) << 20}) {
    uint8_t* p = s.alloc(n);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
    std::memset(p, 0xAB, n);  // writable over its whole extent
  }
}

TEST(Repack, PreparedActivationsAreQ8_0) {
  std::mt19937 rng(3);
  int32_t h[2];
  const int64_t n = 9 * 32;
  auto x = random_x(n, rng);
  for (int j = 64; j < 96; ++j) x[size_t(j)] = 0.f;                        // an all-zero block
  for (int j = 128; j < 160; ++j) x[size_t(j)] = float(j % 5 - 2) * 0.5f;  // rounding ties
  std::vector<uint8_t> want(packed_act_bytes(n));
  prepare_packed_ref(x.data(), want.data(), n);
  for (const auto& [isa, pk] : packed_isas()) {
    std::vector<uint8_t> got(pk->act_bytes(n));
    pk->prepare(x.data(), got.data(), n);
    EXPECT_EQ(got, want) << isa_name(isa);
  }
  std::vector<BlockQ8_0> q(static_cast<size_t>(n / 32));
  quantize_activation(DType::kQ8_0, x.data(), q.data(), n);
  for (int64_t i = 0; i < n / 32; ++i) {
    EXPECT_EQ(std::memcmp(want.data() + 32 * i, q[size_t(i)].qs, 32), 0);
    float d;
    std::memcpy(&d, want.data() + n + 4 * (n / 32) + 4 * i, 4);
    EXPECT_EQ(d, fp16_to_fp32(q[size_t(i)].d));
    int32_t want_h[2] = {0, 0};
    for (int j = 0; j < 32; ++j) want_h[j / 16] += q[size_t(i)].qs[j];
    std::memcpy(&h[0], want.data() + n + 8 * (n / 32) + 4 * i, 4);
    std::memcpy(&h[1], want.data() + n + 12 * (n / 32) + 4 * i, 4);
    EXPECT_EQ(h[0], want_h[0]);
    EXPECT_EQ(h[1], want_h[1]);
  }
}

class PackedKernel : public ::testing::TestWithParam<DType> {};
std::string packed_type_name(const ::testing::TestParamInfo<DType>& p) {
  return info(p.param).name;
}

TEST_P(PackedKernel, MatchesReferenceBitsAndStoredFormat) {
  const DType t = GetParam();
  const int block = info(t).block;
  std::mt19937 rng(17);
  for (int64_t units : {1, 3, 7, 20}) {
    const int64_t n = units * block, rows = 32, nb = n / 32;
    const auto m = random_matrix(t, n, rows, rng);
    WeightView w{t, m.data(), n, rows, row_bytes(t, n)};
    PackedStore store;
    pack_weight(w, store, 2);
    ASSERT_NE(w.packed, nullptr);
    std::vector<std::vector<uint8_t>> acts(8, std::vector<uint8_t>(packed_act_bytes(n)));
    std::vector<std::vector<float>> xq(8, std::vector<float>(static_cast<size_t>(n)));
    const void* a[8];
    for (int k = 0; k < 8; ++k) {
      const auto x = random_x(n, rng);
      prepare_packed_ref(x.data(), acts[size_t(k)].data(), n);
      // The activation values the kernels see: int8 quants times the block scale.
      std::vector<BlockQ8_0> q(static_cast<size_t>(nb));
      quantize_activation(DType::kQ8_0, x.data(), q.data(), n);
      dequantize_row(DType::kQ8_0, q.data(), xq[size_t(k)].data(), n);
      a[k] = acts[size_t(k)].data();
    }
    expect_rows_read_back(w);
    std::vector<float> wr(static_cast<size_t>(n));
    check_groups(w, a, [&](int64_t row, int k, float ref) {
      // Against the stored weights, dequantised independently (dequantize_row), in double.
      // The packed sum has the same exact integer parts; per block it rounds one scale
      // product per term and one FMA per term into the running sum, at most 2 nb + 1
      // roundings of u = eps / 2 each, relative to the terms' magnitude: sum |w a| for
      // the one-term kinds. Q4_K's two terms are S q a and M a (w = S q - M), whose
      // magnitudes are at most |w a| + |M a| and |M a|, so its magnitude gets 2 sum
      // |M a| on top; dequantize_row's own rounding of w (u |w|) is inside the margin.
      const uint8_t* src = w.row(row);
      dequantize_row(t, src, wr.data(), n);
      double exact = 0, mag = 0;
      for (int64_t i = 0; i < n; ++i) {
        const double wa = double(wr[size_t(i)]) * double(xq[size_t(k)][size_t(i)]);
        exact += wa;
        mag += std::fabs(wa) + 2 * std::fabs(k4_min(t, src, i) * double(xq[size_t(k)][size_t(i)]));
      }
      EXPECT_NEAR(ref, exact, double(nb + 1) * FLT_EPSILON * mag)
          << info(t).name << " n=" << n << " row=" << row;
    });
  }
}

// The 32-block kinds are read in one forward sweep per group (the hardware prefetcher follows
// nothing else): in the kernels' order (block j's scales, then its quants) each access first
// touches the cache line right after the furthest one touched so far, or only lines already
// touched, and the sweep ends exactly at the group's end.
TEST(PackedLayout, GroupIsReadFrontToBack) {
  for (DType t : {DType::kQ8_0, DType::kQ5_0, DType::kQ4_0}) {
    const PackKind k = pack_kind(t);
    for (int64_t nb : {1, 2, 3, 20, 21}) {
      int64_t furthest = -1;  // cache line
      auto touch = [&](size_t off, size_t bytes) {
        const auto first = int64_t(off / 64), last = int64_t((off + bytes - 1) / 64);
        if (last > furthest) {
          EXPECT_LE(first, furthest + 1) << info(t).name << " nb=" << nb;
        }
        furthest = std::max(furthest, last);
      };
      for (int64_t j = 0; j < nb; ++j) {
        touch(packed_scales_offset(k, j), 32);
        EXPECT_EQ(packed_quants_offset(k, j) % 64, 0u);
        touch(packed_quants_offset(k, j), packed_q_block_bytes(k));
      }
      EXPECT_EQ(size_t(furthest + 1) * 64, packed_group_bytes(t, nb * 32)) << info(t).name;
    }
  }
  // K-quants: each super-block's head, then its blocks' quants.
  for (DType t : {DType::kQ4_K, DType::kQ6_K}) {
    const PackKind k = pack_kind(t);
    for (int64_t nb : {8, 16, 40}) {
      int64_t furthest = -1;
      for (int64_t j = 0; j < nb; ++j) {
        if (j % 8 == 0) {
          EXPECT_EQ(packed_k_head_offset(k, j), size_t(furthest + 1) * 64) << info(t).name;
          furthest += int64_t(kKHeadBytes / 64);
        }
        EXPECT_EQ(packed_k_quants_offset(k, j), size_t(furthest + 1) * 64) << info(t).name;
        furthest += int64_t(packed_k_quant_bytes(k) / 64);
      }
      EXPECT_EQ(size_t(furthest + 1) * 64, packed_group_bytes(t, nb * 32)) << info(t).name;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(BlockTypes, PackedKernel,
                         ::testing::Values(DType::kQ8_0, DType::kQ5_0, DType::kQ4_0, DType::kQ4_K,
                                           DType::kQ6_K),
                         packed_type_name);

// Through matmul: each token's row of y is the same whether it is computed alone or in a
// batch of 13 (tiles of 8, 4 and 1) and on every ISA with packed kernels, and agrees with the
// unpacked matmul within the reordering bound.
TEST(Repack, MatmulBatchInvariantAndCloseToUnpacked) {
  const auto isas = packed_isas();
  if (cpu_has_avx2()) {  // the CI machines have AVX-512 VNNI: both kernel sets must be there
    ASSERT_NE(packed_kernels(Isa::kAvx2).prepare, nullptr);
    EXPECT_EQ(isas.size(), cpu_has_avx512() ? 2u : 1u);
  }
  if (isas.empty()) GTEST_SKIP() << "no AVX2";
  std::mt19937 rng(5);
  const int64_t n = 640, rows = 96, T = 13;
  for (DType t : {DType::kQ5_0, DType::kQ8_0, DType::kQ4_K, DType::kQ6_K}) {
    const int64_t in = info(t).block == 256 ? 1024 : n;
    const auto m = random_matrix(t, in, rows, rng);
    WeightView plain{t, m.data(), in, rows, row_bytes(t, in)};
    WeightView packed = plain;
    PackedStore store;
    pack_weight(packed, store);
    const auto x = random_x(in * T, rng);
    ThreadPool pool(2);
    MatmulScratch scratch;
    std::vector<float> y_first(static_cast<size_t>(T * rows));
    for (const auto& [isa, pk] : isas) {
      SCOPED_TRACE(std::string(info(t).name) + " " + isa_name(isa));
      std::vector<float> y_batch(static_cast<size_t>(T * rows)), y_one(static_cast<size_t>(rows)),
          y_plain(static_cast<size_t>(T * rows));
      matmul(pool, packed, x.data(), T, y_batch.data(), scratch, isa);
      matmul(pool, plain, x.data(), T, y_plain.data(), scratch, isa);
      if (isa == isas[0].first) y_first = y_batch;
      EXPECT_EQ(y_batch, y_first) << "the same bits on every ISA";
      std::vector<uint8_t> q8(row_bytes(vec_dot_type(t), in));
      for (int64_t tk = 0; tk < T; ++tk) {
        quantize_activation(vec_dot_type(t), x.data() + tk * in, q8.data(), in);
        matmul(pool, packed, x.data() + tk * in, 1, y_one.data(), scratch, isa);
        EXPECT_EQ(std::memcmp(y_one.data(), y_batch.data() + tk * rows, sizeof(float) * rows), 0)
            << "token " << tk;
        if (t != DType::kQ5_0 && t != DType::kQ8_0) continue;  // K-quants: Q8_K rows unpacked
        for (int64_t r = 0; r < rows; ++r) {
          const float a = y_batch[size_t(tk * rows + r)], b = y_plain[size_t(tk * rows + r)];
          // Both sides sum the same exact integer block dots times the same scales, in
          // different float orders: each within (blocks + 16) * eps * sum |w a| of the exact
          // value.
          const double abs_sum = test::abs_dot(t, plain.row(r), q8.data(), in);
          EXPECT_NEAR(a, b, 4.0 * double(in / 32 + 16) * FLT_EPSILON * abs_sum + 1e-30)
              << "token " << tk << " row " << r;
        }
      }
    }
  }
}

}  // namespace g4
