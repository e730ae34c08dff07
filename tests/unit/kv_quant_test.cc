// q4_0 and bf16 KV caches against an independent implementation: gguf-py's quantisers
// (fixture tests/unit/data/kv_q4_0.gguf, written by scripts/gen_kv_q4_0_fixture.py; the exact
// command is in its "fixture.command" key). Rows shaped as Gemma's caches (head dims 256 and
// 512) are stored through KvCache::store and must give gguf-py's bytes; attention over the
// q4_0 cache must equal attention over gguf-py's dequantised rows in an f32 cache (the same
// softmax-weighted sums; only the order of the f32 dot products differs); sparse routing's
// page summaries of a q4_0 cache must be the min/max of those dequantised rows exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "io/gguf.h"
#include "kernels/attention.h"
#include "runtime/kv_cache.h"
#include "runtime/memory_plan.h"

namespace g4 {
namespace {

std::unique_ptr<GgufFile> open_fixture() {
  auto f = GgufFile::open(std::string(G4_SOURCE_DIR) + "/tests/unit/data/kv_q4_0.gguf");
  EXPECT_TRUE(f.ok()) << f.error();
  return f.ok() ? std::move(f).value() : nullptr;
}

struct Case {
  int hkv = 0, hd = 0;
  int64_t positions = 0;
  const GgufTensor* in[2] = {};   // k, v: f32 rows
  const GgufTensor* q4[2] = {};   // gguf-py's q4_0 bytes
  const GgufTensor* deq[2] = {};  // gguf-py's dequantisation
  const GgufTensor* bf[2] = {};   // gguf-py's bf16 bytes
};

Case load_case(const GgufFile& f, const std::string& c) {
  Case k;
  k.hkv = int(f.get_uint("fixture." + c + ".n_kv_heads").value().value_or(0));
  k.hd = int(f.get_uint("fixture." + c + ".head_dim").value().value_or(0));
  const char* names[2] = {".k", ".v"};
  for (int i = 0; i < 2; ++i) {
    k.in[i] = f.tensor("in." + c + names[i]);
    k.q4[i] = f.tensor("q4_0." + c + names[i]);
    k.deq[i] = f.tensor("deq." + c + names[i]);
    k.bf[i] = f.tensor("bf16." + c + names[i]);
  }
  k.positions = k.in[0] ? k.in[0]->rows() : 0;
  return k;
}

const float* f32_row(const GgufTensor* t, int64_t p) {
  return reinterpret_cast<const float*>(t->data) + size_t(p) * size_t(t->ne[0]);
}

KvCacheOptions options(KvCacheType t, int64_t n_ctx, bool sparse) {
  KvCacheOptions o;
  o.n_ctx = n_ctx;
  o.max_chunk = n_ctx;
  o.block_tokens = 16;
  o.type = t;
  o.sparse.enabled = sparse;
  o.sparse.page_tokens = 4;
  return o;
}

class KvQuant : public ::testing::TestWithParam<const char*> {};

TEST_P(KvQuant, StoredBytesAreGgufPys) {
  auto f = open_fixture();
  ASSERT_NE(f, nullptr);
  const Case c = load_case(*f, GetParam());
  ASSERT_GT(c.positions, 4);
  ASSERT_EQ(c.in[0]->ne[0], int64_t(c.hkv) * c.hd);
  for (KvCacheType t : {KvCacheType::kQ4_0, KvCacheType::kBF16}) {
    KvCache kv({{c.hkv, c.hd, 0}}, options(t, 64, false));
    ASSERT_TRUE(kv.add_sequence(0).ok());
    ASSERT_TRUE(kv.reserve(0, c.positions).ok());
    for (int64_t p = 0; p < c.positions; ++p)
      kv.store(0, 0, p, f32_row(c.in[0], p), f32_row(c.in[1], p));
    const GgufTensor* const* want = t == KvCacheType::kQ4_0 ? c.q4 : c.bf;
    const size_t rb = size_t(want[0]->nbytes) / size_t(c.positions);
    EXPECT_EQ(rb,
              t == KvCacheType::kQ4_0 ? size_t(c.hkv * c.hd / 32 * 18) : size_t(c.hkv * c.hd * 2));
    int bad = 0;
    for (int64_t p = 0; p < c.positions; ++p) {
      bad += std::memcmp(kv.k_row(0, 0, p), want[0]->data + size_t(p) * rb, rb) != 0;
      bad += std::memcmp(kv.v_row(0, 0, p), want[1]->data + size_t(p) * rb, rb) != 0;
    }
    EXPECT_EQ(bad, 0) << kv_cache_type_name(t) << " rows differing from gguf-py";
    EXPECT_EQ(kv.block_bytes(), 2 * 16 * rb);
  }
}

// Attention of H query heads at every position over the q4_0 cache == over an f32 cache
// holding gguf-py's dequantised rows (paged global layer and a sliding ring).
TEST_P(KvQuant, AttentionEqualsAttentionOverDequantizedRows) {
  auto f = open_fixture();
  ASSERT_NE(f, nullptr);
  const Case c = load_case(*f, GetParam());
  const int H = 4 * c.hkv;
  std::vector<KvLayerGeometry> geo = {{c.hkv, c.hd, 0}, {c.hkv, c.hd, 5}};
  KvCache q4(geo, options(KvCacheType::kQ4_0, 64, false));
  KvCache ref(geo, options(KvCacheType::kF32, 64, false));
  for (KvCache* kv : {&q4, &ref}) {
    ASSERT_TRUE(kv->add_sequence(0).ok());
    ASSERT_TRUE(kv->reserve(0, c.positions).ok());
  }
  for (int64_t p = 0; p < c.positions; ++p) {
    for (int l = 0; l < 2; ++l) {
      q4.store(0, l, p, f32_row(c.in[0], p), f32_row(c.in[1], p));
      ref.store(0, l, p, f32_row(c.deq[0], p), f32_row(c.deq[1], p));
    }
  }
  std::mt19937 rng(11);
  std::normal_distribution<float> nd;
  std::vector<float> q(size_t(H) * size_t(c.hd));
  double worst = 0;
  for (int l = 0; l < 2; ++l) {
    for (int64_t pos = 0; pos < c.positions; ++pos) {
      for (float& x : q) x = nd(rng) / std::sqrt(float(c.hd));
      AttentionArgs args{H, c.hkv, c.hd, q4.capacity(l), l == 1 ? 5 : 0, 0.f, false};
      std::vector<float> scores(attention_scratch_floats(args, c.positions));
      std::vector<float> a(q.size()), b(q.size());
      const KvView wq = q4.view(0, l), wf = ref.view(0, l);
      AttentionArgs aq = args, af = args;
      aq.kv_q4 = true;
      af.kv_f32 = true;
      aq.blocks = wq.blocks, aq.block_shift = wq.block_shift;
      af.blocks = wf.blocks, af.block_shift = wf.block_shift;
      attend_group(aq, q.data(), wq.k, wq.v, pos, 0, H, a.data(), scores.data());
      attend_group(af, q.data(), wf.k, wf.v, pos, 0, H, b.data(), scores.data());
      for (size_t i = 0; i < a.size(); ++i) {
        const double err = std::fabs(double(a[i]) - double(b[i])) / (1.0 + std::fabs(double(b[i])));
        worst = std::max(worst, err);
        ASSERT_LE(err, 1e-5) << "layer " << l << " pos " << pos << " elem " << i << ": " << a[i]
                             << " vs " << b[i];
      }
    }
  }
  // Not vacuous: q4_0 rows differ from the f32 input by far more than the bound.
  double qerr = 0;
  for (int64_t i = 0; i < c.in[0]->n_elements(); ++i)
    qerr = std::max(qerr, std::fabs(double(reinterpret_cast<const float*>(c.in[0]->data)[i]) -
                                    double(reinterpret_cast<const float*>(c.deq[0]->data)[i])));
  EXPECT_GT(qerr, 1e-2);
  RecordProperty("worst_rel_err", std::to_string(worst));
}

// Sparse routing's per-page min/max of a q4_0 cache are those of the dequantised keys,
// rounded outward to f16.
TEST_P(KvQuant, PageSummariesAreMinMaxOfDequantizedKeys) {
  auto f = open_fixture();
  ASSERT_NE(f, nullptr);
  const Case c = load_case(*f, GetParam());
  KvCache kv({{c.hkv, c.hd, 0}}, options(KvCacheType::kQ4_0, 64, true));
  ASSERT_TRUE(kv.add_sequence(0).ok());
  ASSERT_TRUE(kv.reserve(0, c.positions).ok());
  for (int64_t p = 0; p < c.positions; ++p)
    kv.store(0, 0, p, f32_row(c.in[0], p), f32_row(c.in[1], p));
  kv.summarize(0, 0, 0, c.positions);
  const int page = 4;
  for (int h = 0; h < c.hkv; ++h) {
    const BlockSummaries s = kv.summaries(0, 0, h);
    for (int64_t pg = 0; pg * page < c.positions; ++pg) {
      const uint16_t* mn = s.at(pg);
      const uint16_t* mx = mn + c.hd;
      for (int i = 0; i < c.hd; ++i) {
        float lo = INFINITY, hi = -INFINITY;
        for (int64_t p = pg * page; p < std::min<int64_t>(c.positions, (pg + 1) * page); ++p) {
          const float x = f32_row(c.deq[0], p)[size_t(h) * size_t(c.hd) + size_t(i)];
          lo = std::min(lo, x);
          hi = std::max(hi, x);
        }
        ASSERT_EQ(mn[i], summary_lo(lo)) << "head " << h << " page " << pg << " channel " << i;
        ASSERT_EQ(mx[i], summary_hi(hi)) << "head " << h << " page " << pg << " channel " << i;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(HeadDims, KvQuant, ::testing::Values("hd256", "hd512"));

// g4 plan's bytes per block and ring agree with the cache for every KV type (Gemma 4 31B's
// global head dim 512 and sliding 256).
TEST(KvQuant, PlanMatchesCacheForEveryType) {
  const std::vector<KvLayerGeometry> geo = {{4, 512, 0}, {16, 256, 1024}, {16, 256, 1024}};
  const std::pair<KvCacheType, KvType> types[] = {{KvCacheType::kF16, KvType::kF16},
                                                  {KvCacheType::kF32, KvType::kF32},
                                                  {KvCacheType::kBF16, KvType::kBf16},
                                                  {KvCacheType::kQ8_0, KvType::kQ8_0},
                                                  {KvCacheType::kQ4_0, KvType::kQ4_0}};
  for (const auto& [ct, pt] : types) {
    for (bool sparse : {false, true}) {
      KvCacheOptions co;
      co.n_ctx = 4096;
      co.max_chunk = 512;
      co.type = ct;
      co.sparse.enabled = sparse;
      KvCache kv(geo, co);
      KvPlanOptions o;
      o.n_ctx = 4096;
      o.max_chunk = 512;
      o.global_type = o.sliding_type = pt;
      o.sparse = sparse;
      const KvPlan p = plan_kv(geo, o);
      EXPECT_EQ(int64_t(kv.block_bytes()), p.block_bytes) << kv_cache_type_name(ct);
      EXPECT_EQ(int64_t(kv.ring_bytes_per_seq()), p.types[1].bytes_per_seq)
          << kv_cache_type_name(ct);
    }
  }
  // q4_0: 18 bytes per 32 values, K and V, 256 positions per block, 4 x 512 values per row.
  KvCacheOptions co;
  co.n_ctx = 4096;
  co.type = KvCacheType::kQ4_0;
  EXPECT_EQ(KvCache(geo, co).block_bytes(), size_t(2 * 256 * (4 * 512 / 32) * 18));
}

TEST(KvQuant, TypeNamesRoundTrip) {
  for (const char* n : {"f16", "f32", "bf16", "q8_0", "q4_0"}) {
    KvCacheType t;
    ASSERT_TRUE(parse_kv_cache_type(n, &t)) << n;
    EXPECT_STREQ(kv_cache_type_name(t), n);
  }
  KvCacheType t;
  EXPECT_FALSE(parse_kv_cache_type("q4_1", &t));
}

}  // namespace
}  // namespace g4
