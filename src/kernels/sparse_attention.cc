#include "kernels/sparse_attention.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/fp16.h"
#include "kernels/attention_simd.h"
#include "kernels/dot_simd.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace g4 {

namespace {

// The bound's canonical summation order, which every path below reproduces bit for bit:
// channels [0, hd8) (hd8 = hd rounded down to 8) go to 8 lanes (lane l takes channels
// i = l mod 8, in order), the lanes are reduced as ((l0+l4)+(l1+l5)) + ((l2+l6)+(l3+l7))
// (AVX2's add-halves-then-two-hadds), and channels [hd8, hd) are added one by one after.
// Each term max(q*min, q*max) is two roundings-free-of-contraction products and a max,
// so scalar and SIMD terms are the same floats.
inline float term(float q, float mn, float mx) {
  return std::max(q * mn, q * mx);
}

// A summary value widened (exactly; F16C's conversion gives the same floats).
inline float term(float q, uint16_t mn, uint16_t mx) {
  return term(q, fp16_to_fp32(mn), fp16_to_fp32(mx));
}

float bound_scalar(const float* q, const uint16_t* mn, const uint16_t* mx, int hd) {
  const int hd8 = hd & ~7;
  float lane[8] = {};
  for (int i = 0; i < hd8; i += 8)
    for (int l = 0; l < 8; ++l) lane[l] += term(q[i + l], mn[i + l], mx[i + l]);
  float s =
      ((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7]));
  for (int i = hd8; i < hd; ++i) s += term(q[i], mn[i], mx[i]);
  return s;
}

#if defined(__x86_64__)
// f16c as attention_simd.h's G4_AVX2_ATT, whose 8-lane sum (attn::red) the bounds use.
#define G4_AVX2_SP __attribute__((target("avx2,fma,f16c")))
#define G4_AVX512_SP __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma,f16c")))
using attn::red;

// Bounds of one page for `group` query heads, loading each min/max chunk once.
G4_AVX2_SP inline __m256 load_summary(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

G4_AVX2_SP void page_bounds_avx2(const float* q, int group, int hd, const uint16_t* mn,
                                 const uint16_t* mx, float* out) {
  const int hd8 = hd & ~7;
  for (int h0 = 0; h0 < group; h0 += 4) {
    const int nh = std::min(4, group - h0);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    for (int i = 0; i < hd8; i += 8) {
      const __m256 lo = load_summary(mn + i), hi = load_summary(mx + i);
      for (int h = 0; h < nh; ++h) {
        const __m256 vq = _mm256_loadu_ps(q + size_t(h0 + h) * size_t(hd) + size_t(i));
        acc[h] = _mm256_add_ps(acc[h], _mm256_max_ps(_mm256_mul_ps(vq, lo), _mm256_mul_ps(vq, hi)));
      }
    }
    for (int h = 0; h < nh; ++h) {
      const float* qh = q + size_t(h0 + h) * size_t(hd);
      float s = red(acc[h]);
      for (int i = hd8; i < hd; ++i) s += term(qh[i], mn[i], mx[i]);
      out[h0 + h] = s;
    }
  }
}

// Two heads per 512-bit register (lanes 0-7 one head, 8-15 the next, the same 8 channels):
// each head's lanes see exactly the AVX2 path's operations. qi holds NP pairs of heads
// interleaved (interleave_pairs), so each pair's 16 floats are one load; the NP accumulators
// stay in registers (NP is a template argument).
template <int NP>
G4_AVX512_SP void pairs_avx512(const float* qi, const float* q, int hd, const uint16_t* mn,
                               const uint16_t* mx, float* out) {
  const int hd8 = hd & ~7;
  __m512 acc[NP];
  for (int p = 0; p < NP; ++p) acc[p] = _mm512_setzero_ps();
  for (int i = 0; i < hd8; i += 8) {
    const __m512 lo = _mm512_broadcast_f32x8(load_summary(mn + i));
    const __m512 hi = _mm512_broadcast_f32x8(load_summary(mx + i));
    for (int p = 0; p < NP; ++p) {
      const __m512 vq = _mm512_loadu_ps(qi + (size_t(p) * size_t(hd8) + size_t(i)) * 2);
      acc[p] = _mm512_add_ps(acc[p], _mm512_max_ps(_mm512_mul_ps(vq, lo), _mm512_mul_ps(vq, hi)));
    }
  }
  for (int p = 0; p < NP; ++p) {
    for (int half = 0; half < 2; ++half) {
      const float* qh = q + size_t(2 * p + half) * size_t(hd);
      float s = red(half ? _mm512_extractf32x8_ps(acc[p], 1) : _mm512_castps512_ps256(acc[p]));
      for (int i = hd8; i < hd; ++i) s += term(qh[i], mn[i], mx[i]);
      out[2 * p + half] = s;
    }
  }
}

// q [group][hd] -> [group / 2][hd8 / 8][head 2p's 8 channels, head 2p+1's 8 channels].
void interleave_pairs(const float* q, int group, int hd, float* qi) {
  const int hd8 = hd & ~7;
  for (int p = 0; p < group / 2; ++p)
    for (int i = 0; i < hd8; i += 8) {
      float* o = qi + (size_t(p) * size_t(hd8) + size_t(i)) * 2;
      std::memcpy(o, q + size_t(2 * p) * size_t(hd) + size_t(i), 8 * sizeof(float));
      std::memcpy(o + 8, q + size_t(2 * p + 1) * size_t(hd) + size_t(i), 8 * sizeof(float));
    }
}
#endif

// One KV head's query group, prepared once for the many pages it scores.
struct Prepared {
  const float* q;   // [group][hd]
  const float* qi;  // interleave_pairs(q) for the AVX-512 path, else null
  int group, hd;
};

// max over the group's heads of the page's bound, folded in head order.
using GroupBound = float (*)(const Prepared& pq, const uint16_t* minmax);

float group_bound_scalar(const Prepared& pq, const uint16_t* minmax) {
  const int hd = pq.hd;
  float best = bound_scalar(pq.q, minmax, minmax + hd, hd);
  for (int h = 1; h < pq.group; ++h)
    best = std::max(best, bound_scalar(pq.q + size_t(h) * size_t(hd), minmax, minmax + hd, hd));
  return best;
}

#if defined(__x86_64__)
inline float fold(float best, const float* b, int n, bool first) {
  for (int h = 0; h < n; ++h) best = (first && h == 0) ? b[0] : std::max(best, b[h]);
  return best;
}

float group_bound_avx2(const Prepared& pq, const uint16_t* minmax) {
  float b[64];
  float best = -__builtin_inff();
  for (int h0 = 0; h0 < pq.group; h0 += 64) {
    const int n = std::min(64, pq.group - h0);
    page_bounds_avx2(pq.q + size_t(h0) * size_t(pq.hd), n, pq.hd, minmax, minmax + pq.hd, b);
    best = fold(best, b, n, h0 == 0);
  }
  return best;
}

G4_AVX512_SP float group_bound_avx512(const Prepared& pq, const uint16_t* minmax) {
  const int hd = pq.hd, hd8 = hd & ~7;
  const uint16_t *mn = minmax, *mx = minmax + hd;
  float b[8];
  float best = -__builtin_inff();
  int h0 = 0;
  auto qi = [&](int h) { return pq.qi + size_t(h / 2) * size_t(hd8) * 2; };
  auto qh = [&](int h) { return pq.q + size_t(h) * size_t(hd); };
  for (; pq.group - h0 >= 8; h0 += 8) {
    pairs_avx512<4>(qi(h0), qh(h0), hd, mn, mx, b);
    best = fold(best, b, 8, h0 == 0);
  }
  const int np = (pq.group - h0) / 2;
  if (np > 0) {
    if (np == 1) pairs_avx512<1>(qi(h0), qh(h0), hd, mn, mx, b);
    if (np == 2) pairs_avx512<2>(qi(h0), qh(h0), hd, mn, mx, b);
    if (np == 3) pairs_avx512<3>(qi(h0), qh(h0), hd, mn, mx, b);
    best = fold(best, b, 2 * np, h0 == 0);
    h0 += 2 * np;
  }
  if (h0 < pq.group) {  // an odd last head
    page_bounds_avx2(qh(h0), 1, hd, mn, mx, b);
    best = fold(best, b, 1, h0 == 0);
  }
  return best;
}
#endif

struct Scorer {
  GroupBound bound = group_bound_scalar;
  bool interleave = false;
};

Scorer pick_scorer() {
  Scorer s;
#if defined(__x86_64__)
  const Isa isa = best_isa();
  if (isa == Isa::kAvx512)
    s = {group_bound_avx512, true};
  else if (isa != Isa::kScalar)
    s.bound = group_bound_avx2;
#endif
  return s;
}

const Scorer& scorer() {
  static const Scorer s = pick_scorer();
  return s;
}

// Prepares q for scoring (the interleaved copy in a per-thread buffer: no allocation per step
// once warm).
Prepared prepare(const float* q, int group, int hd) {
  Prepared pq{q, nullptr, group, hd};
#if defined(__x86_64__)
  if (scorer().interleave) {
    thread_local std::vector<float> buf;
    buf.resize(size_t(group / 2) * size_t(hd & ~7) * 2);
    interleave_pairs(q, group, hd, buf.data());
    pq.qi = buf.data();
  }
#endif
  return pq;
}

}  // namespace

uint16_t summary_lo(float x) {
  if (x != x) return fp32_to_fp16(x);
  if (x <= -65504.f) return 0xfbff;  // -65504
  if (x >= 65504.f) return 0x7bff;
  uint16_t h = fp32_to_fp16(x);
  if (fp16_to_fp32(h) > x)
    h = (h & 0x8000) ? uint16_t(h == 0x8000 ? 0x8001 : h + 1)  // -0, < 0
                     : uint16_t(h == 0 ? 0x8001 : h - 1);
  return h;
}

uint16_t summary_hi(float x) {
  if (x != x) return fp32_to_fp16(x);
  if (x <= -65504.f) return 0xfbff;
  if (x >= 65504.f) return 0x7bff;
  uint16_t h = fp32_to_fp16(x);
  if (fp16_to_fp32(h) < x)
    h = (h & 0x8000) ? uint16_t(h == 0x8000 ? 0x0001 : h - 1) : uint16_t(h + 1);
  return h;
}

float block_bound(const float* q, const uint16_t* minmax, int hd) {
  return bound_scalar(q, minmax, minmax + hd, hd);
}

float group_page_bound(const float* q, int group, int hd, const uint16_t* minmax) {
  return scorer().bound(prepare(q, group, hd), minmax);
}

float group_page_bound_scalar(const float* q, int group, int hd, const uint16_t* minmax) {
  return group_bound_scalar(Prepared{q, nullptr, group, hd}, minmax);
}

// (Used on x86 only, but score_pages sizes its look-ahead from it on every target.)
constexpr int kPrefetchSummaryBytes = 8192;

int64_t budget_pages(const SparseAttentionOptions& o, int64_t n_pages, int64_t page_tokens) {
  if (o.budget_tokens > 0) return (o.budget_tokens + page_tokens - 1) / page_tokens;
  return std::max<int64_t>(1, int64_t(std::ceil(o.budget_share * double(n_pages))));
}

const char* budget_error(const SparseAttentionOptions& o) {
  if (o.budget_tokens < 0) return "the sparse budget must be a positive number of keys";
  if (o.budget_tokens == 0 && !(o.budget_share > 0.0 && o.budget_share <= 1.0))
    return "the sparse budget's share must be above 0% and at most 100%";
  return "";
}

bool parse_sparse_budget(std::string_view v, SparseAttentionOptions* o, int64_t min_tokens) {
  if (v.empty()) return false;
  if (v.back() == '%') {
    v.remove_suffix(1);
    double p = 0;
    const auto r = std::from_chars(v.data(), v.data() + v.size(), p);
    if (v.empty() || r.ec != std::errc() || r.ptr != v.data() + v.size() || !(p > 0.0) || p > 100.0)
      return false;
    o->budget_tokens = 0;
    o->budget_share = p / 100.0;
    return true;
  }
  int64_t n = 0;
  const auto r = std::from_chars(v.data(), v.data() + v.size(), n);
  if (r.ec != std::errc() || r.ptr != v.data() + v.size() || n < std::max<int64_t>(1, min_tokens))
    return false;
  o->budget_tokens = n;
  return true;
}

int64_t pages_to_score(int64_t n_blocks, int64_t budget_blocks, int recent_blocks) {
  // Blocks [keep_from, n_blocks) are the recent ones and the query's own.
  const int64_t keep_from = std::max<int64_t>(1, n_blocks - 1 - recent_blocks);
  const int64_t forced = 1 + (n_blocks - keep_from);
  if (budget_blocks >= n_blocks || keep_from <= 1 || budget_blocks - forced <= 0) return 1;
  return keep_from;
}

void score_pages(const float* q, int group, int hd, const BlockSummaries& s, int64_t from,
                 int64_t to, float* scores) {
  // Pages of one KV block are contiguous in the summaries: walk them block by block.
  // The summaries stream from memory once per step and the min/max loads stall (2026-12-08,
  // perf annotate of a 32K decode with pages of 8: 42% of page_bounds' samples on its first
  // load), so each page asks for the one kPrefetchSummaryBytes ahead, across blocks too.
  const int64_t per_block = int64_t(1) << s.page_shift;
  const int bytes = int(2 * sizeof(uint16_t)) * hd;
  const int64_t ahead = std::max<int64_t>(1, kPrefetchSummaryBytes / bytes);
  const GroupBound bound = scorer().bound;
  const Prepared pq = prepare(q, group, hd);
  for (int64_t b = from; b < to;) {
    const uint16_t* mm = s.at(b);
    const int64_t end = std::min(to, (b | (per_block - 1)) + 1);
    for (; b < end; ++b, mm += s.page_stride) {
#if defined(__x86_64__)
      if (b + ahead < to) attn::prefetch_bytes(s.at(b + ahead), bytes);
#endif
      scores[b] = bound(pq, mm);
    }
  }
}

int pick_pages(const float* scores, int64_t n_blocks, int64_t budget_blocks, int recent_blocks,
               int32_t* out) {
  // (In here a "block" is a selection page.)
  const int64_t keep_from = std::max<int64_t>(1, n_blocks - 1 - recent_blocks);
  const int64_t forced = 1 + (n_blocks - keep_from);
  if (budget_blocks >= n_blocks || keep_from <= 1) {
    for (int64_t b = 0; b < n_blocks; ++b) out[b] = int32_t(b);
    return int(n_blocks);
  }
  const int64_t slots = std::max<int64_t>(0, budget_blocks - forced);
  if (slots == 0) {
    int n = 0;
    out[n++] = 0;
    for (int64_t b = keep_from; b < n_blocks; ++b) out[n++] = int32_t(b);
    return n;
  }
  // The `slots` best candidates under the total order (score desc, page asc; a NaN score
  // ranks as -inf): a unique set, found by selection (O(n); a heap of the best took
  // O(n log slots), 0.2 ms per layer at 4096 pages of 8) and then put in page order.
  auto key = [&](int32_t x) {
    const float v = scores[x];
    return v != v ? -INFINITY : v;
  };
  auto before = [&](int32_t x, int32_t y) {
    const float kx = key(x), ky = key(y);
    return kx > ky || (kx == ky && x < y);
  };
  int32_t* cand = out + 1;
  const int64_t count = keep_from - 1;
  for (int64_t i = 0; i < count; ++i) cand[i] = int32_t(i + 1);
  const int64_t taken = std::min(slots, count);
  if (taken < count) std::nth_element(cand, cand + taken, cand + count, before);
  std::sort(cand, cand + taken);
  int n = 0;
  out[n++] = 0;
  n += int(taken);
  for (int64_t b = keep_from; b < n_blocks; ++b) out[n++] = int32_t(b);
  return n;
}

int select_pages(const float* q, int group, int hd, const BlockSummaries& s, int64_t n_blocks,
                 int64_t budget_blocks, int recent_blocks, int32_t* out, float* scratch) {
  score_pages(q, group, hd, s, 1, pages_to_score(n_blocks, budget_blocks, recent_blocks), scratch);
  return pick_pages(scratch, n_blocks, budget_blocks, recent_blocks, out);
}

}  // namespace g4
