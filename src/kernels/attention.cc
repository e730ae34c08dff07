#include "kernels/attention.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "kernels/attention_simd.h"
#include "kernels/dot_simd.h"
#include "kernels/ops.h"
#include "kernels/quant.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace g4 {

using namespace attn;  // the SIMD primitives (attention_simd.h)

size_t attention_scratch_floats(const AttentionArgs& a, int64_t max_keys) {
  const int group = a.n_heads / a.n_kv_heads;
  return size_t(group) * size_t(max_keys) + size_t(a.head_dim);
}

namespace {

// The keys a query at pos reads: its causal window cut to [a.key_lo, a.key_hi).
struct KeySpan {
  int64_t first, n;  // n <= 0: none
};
inline KeySpan key_span(const AttentionArgs& a, int64_t pos) {
  const int64_t w = a.window > 0 ? std::max<int64_t>(0, pos - a.window + 1) : 0;
  const int64_t first = std::max(w, a.key_lo);
  return {first, std::min(pos, a.key_hi - 1) - first + 1};
}
// Heads [h0, h1) have no keys in the span: an empty chunk (sum 0) in their stats.
inline void no_keys(float* stats, int h0, int h1) {
  if (stats == nullptr) return;
  for (int h = h0; h < h1; ++h) {
    stats[2 * h] = -INFINITY;
    stats[2 * h + 1] = 0.f;
  }
}
inline float* head_stats(float* stats, int h) {
  return stats != nullptr ? stats + 2 * h : nullptr;
}

// Heads [hs, he) of one KV head over keys first..first+n-1, each K and V row widened to f32
// once for the whole group (widen_k(j, row), widen_v(j, row)), then the f32 dot and axpy.
// The portable path of fp16 caches and the only path of q8_0 ones.
template <typename WidenK, typename WidenV>
void attend_widened(const AttentionArgs& a, const float* q, int64_t n, int hs, int he,
                    WidenK widen_k, WidenV widen_v, float* out, float* scores, float* stats) {
  const int hd = a.head_dim;
  float* row = scores + size_t(he - hs) * size_t(n);
  for (int64_t j = 0; j < n; ++j) {
    widen_k(j, row);
    for (int h = hs; h < he; ++h) {
      float s = dot_f32(q + size_t(h) * size_t(hd), row, hd);
      if (a.softcap > 0.f) s = softcap(s, a.softcap);
      scores[size_t(h - hs) * size_t(n) + size_t(j)] = s;
    }
  }
  for (int h = hs; h < he; ++h) {
    softmax_stats(scores + size_t(h - hs) * size_t(n), n, head_stats(stats, h));
    std::memset(out + size_t(h) * size_t(hd), 0, sizeof(float) * size_t(hd));
  }
  for (int64_t j = 0; j < n; ++j) {
    widen_v(j, row);
    for (int h = hs; h < he; ++h)
      axpy_f32(out + size_t(h) * size_t(hd), scores[size_t(h - hs) * size_t(n) + size_t(j)], row,
               hd);
  }
}

void attend_group_f16(const AttentionArgs& a, const float* q, const uint16_t* k, const uint16_t* v,
                      int64_t pos, int h0, int h1, float* out, float* scores, float* stats) {
  const KeySpan span = key_span(a, pos);  // (no structured binding: lambdas capture these)
  const int64_t first = span.first, n = span.n;
  if (n <= 0) return no_keys(stats, h0, h1);
  const int group = a.n_heads / a.n_kv_heads;
  const int hd = a.head_dim;
  const size_t slot_stride = size_t(a.n_kv_heads) * size_t(hd);
  for (int hs = h0; hs < h1;) {
    // Heads [hs, he) read the same KV head: widen each K and V row once for all of them.
    const int kvh = hs / group;
    const int he = std::min(h1, (kvh + 1) * group);
#if defined(__x86_64__)
    if (have_avx2() && hd % 8 == 0) {
      const size_t off = size_t(kvh) * size_t(hd);
      auto krow = [&](int64_t j) {
        return k + size_t(attention_row(a, first + j)) * slot_stride + off;
      };
      auto vrow = [&](int64_t j) {
        return v + size_t(attention_row(a, first + j)) * slot_stride + off;
      };
      qk_scores_avx2(q + size_t(hs) * size_t(hd), he - hs, hd, n, krow, scores);
      for (int h = hs; h < he; ++h) {
        float* sc = scores + size_t(h - hs) * size_t(n);
        if (a.softcap > 0.f) {
          softcap_inplace(sc, n, a.softcap);
        }
        softmax_stats(sc, n, head_stats(stats, h));
      }
      pv_f16(scores, size_t(n), he - hs, hd, 0, n, vrow, out + size_t(hs) * size_t(hd), false);
      hs = he;
      continue;
    }
#endif
    const size_t off = size_t(kvh) * size_t(hd);
    attend_widened(
        a, q, n, hs, he,
        [&](int64_t j, float* row) {
          widen(k + size_t(attention_row(a, first + j)) * slot_stride + off, row, hd);
        },
        [&](int64_t j, float* row) {
          widen(v + size_t(attention_row(a, first + j)) * slot_stride + off, row, hd);
        },
        out, scores, stats);
    hs = he;
  }
}

// A query block's rows for heads [h0, h0 + nh), packed: row i * nh + h of qb (each hd floats).
void gather_queries(const float* q, size_t q_stride, int nq, int h0, int nh, int hd, float* qb) {
  for (int i = 0; i < nq; ++i)
    std::memcpy(qb + size_t(i) * size_t(nh) * size_t(hd),
                q + size_t(i) * q_stride + size_t(h0) * size_t(hd),
                sizeof(float) * size_t(nh) * size_t(hd));
}

// A query block's shared bookkeeping: rows p0 .. p0 + nq - 1 read the block's keys
// [f0, f0 + n) (f0: the first row's first key, the last row's last key ends it), row i's own
// keys block-relative [o, o + len); its stats at row i of `stats` (if any).
struct QueryBlock {
  const AttentionArgs& a;
  int64_t p0;
  int nq;
  float* stats;
  int64_t f0 = 0, n = 0;
  QueryBlock(const AttentionArgs& args, int64_t first_pos, int rows, float* st)
      : a(args), p0(first_pos), nq(rows), stats(st) {
    f0 = key_span(a, p0).first;
    n = std::min(p0 + nq - 1, a.key_hi - 1) - f0 + 1;
  }
  float* row_stats(int i) const {
    return stats != nullptr ? stats + 2 * size_t(i) * size_t(a.n_heads) : nullptr;
  }
  void span(int i, int64_t& o, int64_t& len) const {
    const KeySpan ks = key_span(a, p0 + i);
    o = ks.first - f0;
    len = ks.n;
  }
  // No keys at all: every row's heads get empty stats.
  bool empty(int h0, int h1) const {
    if (n > 0) return false;
    for (int i = 0; i < nq; ++i) no_keys(row_stats(i), h0, h1);
    return true;
  }
  // Each row's soft-cap and softmax over its own keys (sc: [nq * nh][n] raw scores); with
  // `out`, zeroes the rows' outputs for heads that have keys.
  void softmax(float* sc, int h0, int h1, float* out, size_t out_stride) const {
    const int nh = h1 - h0, hd = a.head_dim;
    for (int i = 0; i < nq; ++i) {
      int64_t o, len;
      span(i, o, len);
      if (len <= 0) {
        no_keys(row_stats(i), h0, h1);
        continue;
      }
      for (int h = 0; h < nh; ++h) {
        float* row = sc + size_t(i * nh + h) * size_t(n) + size_t(o);
        if (a.softcap > 0.f) softcap_inplace(row, len, a.softcap);
        softmax_stats(row, len, head_stats(row_stats(i), h0 + h));
        if (out != nullptr)
          std::memset(out + size_t(i) * out_stride + size_t(h0 + h) * size_t(hd), 0,
                      sizeof(float) * size_t(hd));
      }
    }
  }
};

#if defined(__x86_64__)
// attend_group_f16's AVX2 path for nq consecutive query positions p0.. of one sequence and
// heads [h0, h1) of one KV head, bit for bit per (token, head): every score is the same q.k
// chain (qk_block), every row's softmax runs over its own keys, and every output element gets
// the same FMAs in key order (pv_f16, continued across key tiles). What changes is the memory
// traffic: each tile of kTile keys is read once for all nq * (h1 - h0) rows, where one token at
// a time reads every key again (at a depth of 16K, 16 MiB of K/V per token and global layer).
// Scratch: the rows' queries, then their scores over the block's keys.
void attend_block_f16(const AttentionArgs& a, const float* q, size_t q_stride, int64_t p0, int nq,
                      const uint16_t* k, const uint16_t* v, int h0, int h1, float* out,
                      size_t out_stride, float* scratch, float* stats) {
  constexpr int64_t kTile = 64;
  const int hd = a.head_dim, group = a.n_heads / a.n_kv_heads, nh = h1 - h0, R = nq * nh;
  const int kvh = h0 / group;
  const QueryBlock qblk(a, p0, nq, stats);
  if (qblk.empty(h0, h1)) return;
  const int64_t f0 = qblk.f0, n = qblk.n;
  const size_t slot_stride = size_t(a.n_kv_heads) * size_t(hd), off = size_t(kvh) * size_t(hd);
  auto krow = [&](int64_t j) { return k + size_t(attention_row(a, f0 + j)) * slot_stride + off; };
  auto vrow = [&](int64_t j) { return v + size_t(attention_row(a, f0 + j)) * slot_stride + off; };
  const bool wide = have_avx512(), wide_pv = wide && hd % 64 == 0;
  float* qb = scratch;                           // [R][hd], row i * nh + (h - h0)
  float* sc = scratch + size_t(R) * size_t(hd);  // [R][n]
  gather_queries(q, q_stride, nq, h0, nh, hd, qb);
  // Scores, a key tile at a time (it stays in L1/L2 while every row group passes over it).
  // Keys past a row's own position are scored too and never read.
  for (int64_t jt = 0; jt < n; jt += kTile) {
    const int64_t je = std::min(n, jt + kTile);
    for (int r0 = 0; r0 < R; r0 += 4) {
      const int m = std::min(4, R - r0);
      const float* qr = qb + size_t(r0) * size_t(hd);
      if (m == 4 && wide) {
        for (int64_t j = jt; j < je; j += 4) {
          const uint16_t* kk[4];
          for (int c = 0; c < 4; ++c) kk[c] = krow(std::min(j + c, je - 1));
          float s[16];
          qk_4x4(qr, hd, kk, s);
          for (int i = 0; i < 4; ++i)
            for (int c = 0; c < 4 && j + c < je; ++c)
              sc[size_t(r0 + i) * size_t(n) + size_t(j + c)] = s[i * 4 + c];
        }
        continue;
      }
      for (int64_t j = jt; j < je; j += 2) {
        const uint16_t* k0 = krow(j);
        const uint16_t* k1 = j + 1 < je ? krow(j + 1) : k0;
        float s0[4], s1[4];
        if (m == 4) qk_block<4>(qr, hd, k0, k1, s0, s1);
        if (m == 3) qk_block<3>(qr, hd, k0, k1, s0, s1);
        if (m == 2) qk_block<2>(qr, hd, k0, k1, s0, s1);
        if (m == 1) qk_block<1>(qr, hd, k0, k1, s0, s1);
        for (int i = 0; i < m; ++i) {
          sc[size_t(r0 + i) * size_t(n) + size_t(j)] = s0[i];
          if (j + 1 < je) sc[size_t(r0 + i) * size_t(n) + size_t(j + 1)] = s1[i];
        }
      }
    }
  }
  qblk.softmax(sc, h0, h1, nullptr, 0);  // each row over its own keys
  // Values, a key tile at a time for every token's heads (AVX-512 with head sizes a multiple
  // of 64: the tile widened to f32 once, then four rows per pass over it).
  float* vt = sc + size_t(R) * size_t(n);  // [kTile][hd]
  for (int64_t jt = 0; jt < n; jt += kTile) {
    const int64_t je = std::min(n, jt + kTile);
    if (wide_pv)
      for (int64_t j = jt; j < je; ++j) widen(vrow(j), vt + size_t(j - jt) * size_t(hd), hd);
    for (int i = 0; i < nq; ++i) {
      int64_t o, len;
      qblk.span(i, o, len);
      const int64_t b = std::max(jt, o), e = std::min(je, o + len);
      if (b >= e) continue;
      const float* pi = sc + size_t(i * nh) * size_t(n);
      float* oi = out + size_t(i) * out_stride + size_t(h0) * size_t(hd);
      if (!wide_pv) {
        pv_f16(pi, size_t(n), nh, hd, b, e, vrow, oi, b > o);
        continue;
      }
      for (int r = 0; r < nh; r += 4)
        pv_rows_f32(pi + size_t(r) * size_t(n), size_t(n), std::min(4, nh - r), hd, b, e, vt, jt,
                    oi + size_t(r) * size_t(hd), b > o);
    }
  }
}
#endif

// Quantized (q8_0, q4_0) and bf16 K/V: each row of the KV head is widened to f32 once for the
// heads of its group (dequant_kv), then the f32 dot and axpy of attend_widened.
void attend_group_dequant(const AttentionArgs& a, DType t, const float* q, const uint8_t* k,
                          const uint8_t* v, int64_t pos, int h0, int h1, float* out, float* scores,
                          float* stats) {
  const KeySpan span = key_span(a, pos);  // (no structured binding: lambdas capture these)
  const int64_t first = span.first, n = span.n;
  if (n <= 0) return no_keys(stats, h0, h1);
  const int group = a.n_heads / a.n_kv_heads;
  const int hd = a.head_dim;
  const size_t head_bytes = row_bytes(t, hd);
  const size_t slot_stride = size_t(a.n_kv_heads) * head_bytes;
  for (int hs = h0; hs < h1;) {
    const int kvh = hs / group;
    const int he = std::min(h1, (kvh + 1) * group);
    const size_t off = size_t(kvh) * head_bytes;
    // Row j, with row j + kPrefetchKeys asked for (as the fp16 loops do).
    auto at = [&](const uint8_t* base, int64_t j) {
#if defined(__x86_64__)
      if (j + kPrefetchKeys < n)
        prefetch_bytes(
            base + size_t(attention_row(a, first + j + kPrefetchKeys)) * slot_stride + off,
            int(head_bytes));
#endif
      return base + size_t(attention_row(a, first + j)) * slot_stride + off;
    };
    attend_widened(
        a, q, n, hs, he, [&](int64_t j, float* row) { dequant_kv(t, at(k, j), row, hd); },
        [&](int64_t j, float* row) { dequant_kv(t, at(v, j), row, hd); }, out, scores, stats);
    hs = he;
  }
}

// One query's heads [h0, h1) over the cache, a head at a time. K/V rows are fp16 (SIMD dot and
// axpy above) or float32 (exact numerics, tiny-model parity: plain loops).
inline float row_dot(const float* q, const uint16_t* k, int n) {
  return dot_f32_f16(q, k, n);
}
inline float row_dot(const float* q, const float* k, int n) {
  float s = 0;
  for (int i = 0; i < n; ++i) s += q[i] * k[i];
  return s;
}
inline void row_axpy(float* y, float a, const uint16_t* x, int n) {
  axpy_f16(y, a, x, n);
}
inline void row_axpy(float* y, float a, const float* x, int n) {
  for (int i = 0; i < n; ++i) y[i] += a * x[i];
}

template <typename T>
void attend_heads(const AttentionArgs& a, const float* q, const T* k, const T* v, int64_t pos,
                  int h0, int h1, float* out, float* scores, float* stats) {
  const KeySpan span = key_span(a, pos);  // (no structured binding: lambdas capture these)
  const int64_t first = span.first, n = span.n;
  if (n <= 0) return no_keys(stats, h0, h1);
  const int group = a.n_heads / a.n_kv_heads;
  const size_t slot_stride = size_t(a.n_kv_heads) * size_t(a.head_dim);
  for (int h = h0; h < h1; ++h) {
    const int kvh = h / group;
    const float* qh = q + size_t(h) * size_t(a.head_dim);
    for (int64_t j = 0; j < n; ++j) {
      const int64_t slot = attention_row(a, first + j);
      float s = row_dot(qh, k + size_t(slot) * slot_stride + size_t(kvh) * size_t(a.head_dim),
                        a.head_dim);
      if (a.softcap > 0.f) s = softcap(s, a.softcap);
      scores[j] = s;
    }
    softmax_stats(scores, n, head_stats(stats, h));
    float* oh = out + size_t(h) * size_t(a.head_dim);
    std::memset(oh, 0, sizeof(float) * size_t(a.head_dim));
    for (int64_t j = 0; j < n; ++j) {
      const int64_t slot = attention_row(a, first + j);
      row_axpy(oh, scores[j], v + size_t(slot) * slot_stride + size_t(kvh) * size_t(a.head_dim),
               a.head_dim);
    }
  }
}

// attend_group for nq consecutive positions p0.. of one sequence and heads [h0, h1) of one KV
// head, for the caches attend_group widens row by row (q8_0, q4_0, bf16: attend_widened) or
// reads as floats (f32: attend_heads): each key tile is widened once for all nq x (h1 - h0)
// rows instead of once per token, and every row gets its own keys' scores with the same dot,
// softcap and softmax, and the same axpys in key order, so each (token, head) is bit for bit
// the one-token result. row(j, buf) returns key or value row j of the block as floats (widened
// into buf, or in place). Scratch: as attend_block_f16's, the rows' scores then a widened tile.
template <typename KRow, typename VRow, typename Dot, typename Axpy>
void attend_block_rows(const AttentionArgs& a, const float* q, size_t q_stride, int64_t p0, int nq,
                       int h0, int h1, float* out, size_t out_stride, float* scratch, float* stats,
                       KRow krow, VRow vrow, Dot dot, Axpy axpy, bool simd) {
  constexpr int64_t kTile = 64;
  const int hd = a.head_dim, nh = h1 - h0, R = nq * nh;
  const QueryBlock qblk(a, p0, nq, stats);
  if (qblk.empty(h0, h1)) return;
  const int64_t f0 = qblk.f0, n = qblk.n;
  float* qb = scratch;                           // [R][hd], row i * nh + (h - h0)
  float* sc = scratch + size_t(R) * size_t(hd);  // [R][n]
  float* tile = sc + size_t(R) * size_t(n);      // [kTile][hd]
  const float* rows[kTile];
  gather_queries(q, q_stride, nq, h0, nh, hd, qb);
  // Raw scores, a key tile at a time; with simd, four rows x four keys per pass over the
  // whole tile (keys past a row's own are scored too and never read).
  for (int64_t jt = 0; jt < n; jt += kTile) {
    const int64_t je = std::min(n, jt + kTile);
    for (int64_t j = jt; j < je; ++j)
      rows[j - jt] = krow(f0 + j, tile + size_t(j - jt) * size_t(hd));
    int r0 = 0;
#if defined(__x86_64__)
    for (; simd && r0 + 4 <= R; r0 += 4) {
      for (int64_t j = jt; j < je; j += 4) {
        const float* kk[4];
        for (int c = 0; c < 4; ++c) kk[c] = rows[std::min(j + c, je - 1) - jt];
        float s4[16];
        qk_4x4_f32(qb + size_t(r0) * size_t(hd), hd, kk, s4);
        for (int r = 0; r < 4; ++r)
          for (int c = 0; c < 4 && j + c < je; ++c)
            sc[size_t(r0 + r) * size_t(n) + size_t(j + c)] = s4[r * 4 + c];
      }
    }
#endif
    for (; r0 < R; ++r0) {
      int64_t o, len;
      qblk.span(r0 / nh, o, len);
      const int64_t b = std::max(jt, o), e = std::min(je, o + len);
      for (int64_t j = b; j < e; ++j)
        sc[size_t(r0) * size_t(n) + size_t(j)] =
            dot(qb + size_t(r0) * size_t(hd), rows[j - jt], hd);
    }
  }
  qblk.softmax(sc, h0, h1, out, out_stride);  // and the outputs zeroed for the axpys
  // Values in key order per output element: four rows per pass over a widened tile
  // (pv_rows_f32, the axpys' FMAs) where AVX-512 and the head size allow.
  const bool wide_pv = simd && hd % 64 == 0;
  for (int64_t jt = 0; jt < n; jt += kTile) {
    const int64_t je = std::min(n, jt + kTile);
    for (int64_t j = jt; j < je; ++j)
      rows[j - jt] = vrow(f0 + j, tile + size_t(j - jt) * size_t(hd));
    for (int i = 0; i < nq; ++i) {
      int64_t o, len;
      qblk.span(i, o, len);
      const int64_t b = std::max(jt, o), e = std::min(je, o + len);
      if (b >= e) continue;
      const float* pi = sc + size_t(i * nh) * size_t(n);
      float* oi = out + size_t(i) * out_stride + size_t(h0) * size_t(hd);
#if defined(__x86_64__)
      if (wide_pv) {
        for (int r = 0; r < nh; r += 4)
          pv_rows_f32(pi + size_t(r) * size_t(n), size_t(n), std::min(4, nh - r), hd, b, e, tile,
                      jt, oi + size_t(r) * size_t(hd), true);
        continue;
      }
#endif
      for (int h = 0; h < nh; ++h)
        for (int64_t j = b; j < e; ++j)
          axpy(oi + size_t(h) * size_t(hd), pi[size_t(h) * size_t(n) + size_t(j)], rows[j - jt],
               hd);
    }
  }
}

// attend_block_rows over a q8_0, q4_0, bf16 or f32 cache.
void attend_block_widened(const AttentionArgs& a, const float* q, size_t q_stride, int64_t p0,
                          int nq, const void* k, const void* v, int h0, int h1, float* out,
                          size_t out_stride, float* scratch, float* stats) {
  const int hd = a.head_dim, kvh = h0 / (a.n_heads / a.n_kv_heads);
  if (a.kv_f32) {
    const size_t stride = size_t(a.n_kv_heads) * size_t(hd), off = size_t(kvh) * size_t(hd);
    const auto* kf = static_cast<const float*>(k);
    const auto* vf = static_cast<const float*>(v);
    attend_block_rows(
        a, q, q_stride, p0, nq, h0, h1, out, out_stride, scratch, stats,
        [&](int64_t p, float*) { return kf + size_t(attention_row(a, p)) * stride + off; },
        [&](int64_t p, float*) { return vf + size_t(attention_row(a, p)) * stride + off; },
        [](const float* x, const float* y, int m) { return row_dot(x, y, m); },
        [](float* y, float w, const float* x, int m) { row_axpy(y, w, x, m); }, false);
    return;
  }
  const DType t = kv_dtype(a);
  const size_t head_bytes = row_bytes(t, hd), stride = size_t(a.n_kv_heads) * head_bytes,
               off = size_t(kvh) * head_bytes;
  const auto* kb = static_cast<const uint8_t*>(k);
  const auto* vb = static_cast<const uint8_t*>(v);
  const int64_t last = p0 + nq - 1;  // no key lies past the block's last query
  // Position p's row widened into buf, position p + kPrefetchKeys asked for (see
  // attention_simd.h).
  auto widened = [&](const uint8_t* base, int64_t p, float* buf) {
#if defined(__x86_64__)
    if (p + kPrefetchKeys <= last)
      prefetch_bytes(base + size_t(attention_row(a, p + kPrefetchKeys)) * stride + off,
                     int(head_bytes));
#endif
    dequant_kv(t, base + size_t(attention_row(a, p)) * stride + off, buf, hd);
    return static_cast<const float*>(buf);
  };
  attend_block_rows(
      a, q, q_stride, p0, nq, h0, h1, out, out_stride, scratch, stats,
      [&](int64_t p, float* buf) { return widened(kb, p, buf); },
      [&](int64_t p, float* buf) { return widened(vb, p, buf); },
      [](const float* x, const float* y, int m) { return dot_f32(x, y, m); },
      [](float* y, float w, const float* x, int m) { axpy_f32(y, w, x, m); },
      have_avx512() && hd % 8 == 0);
}

}  // namespace

void attend_one(const AttentionArgs& a, const float* q, const void* k, const void* v, int64_t pos,
                int h0, int h1, float* out, float* scores, float* stats) {
  if (a.kv_q8 || a.kv_q4 || a.kv_bf16) {
    return attend_group_dequant(a, kv_dtype(a), q, static_cast<const uint8_t*>(k),
                                static_cast<const uint8_t*>(v), pos, h0, h1, out, scores, stats);
  }
  if (a.kv_f32) {
    attend_heads(a, q, static_cast<const float*>(k), static_cast<const float*>(v), pos, h0, h1, out,
                 scores, stats);
  } else {
    attend_heads(a, q, static_cast<const uint16_t*>(k), static_cast<const uint16_t*>(v), pos, h0,
                 h1, out, scores, stats);
  }
}

namespace {
std::atomic<int64_t> g_key_chunk{kAttentionKeyChunk};
}  // namespace

int64_t attention_key_chunk() {
  return g_key_chunk.load(std::memory_order_relaxed);
}
void set_attention_key_chunk(int64_t keys) {
  g_key_chunk.store(keys > 0 ? keys : kAttentionKeyChunk, std::memory_order_relaxed);
}

void attention_merge(float* out, float* st, const float* part, const float* part_st, int hd) {
  if (part_st[1] == 0.f) return;
  const float m = std::max(st[0], part_st[0]);
  const float a = st[1] * std::exp(st[0] - m), b = part_st[1] * std::exp(part_st[0] - m);
  const float s = a + b, wa = a / s, wb = b / s;
  for (int i = 0; i < hd; ++i) out[i] = wa * out[i] + wb * part[i];
  st[0] = m;
  st[1] = s;
}

int attention_query_block(int group, int head_dim, int64_t max_keys) {
  (void)head_dim;
  const int64_t budget = int64_t(4) << 20;  // score floats per thread (16 MiB)
  const int64_t per_token = int64_t(group) * (max_keys + 16);
  return int(std::clamp<int64_t>(budget / std::max<int64_t>(1, per_token), 1, 16));
}

size_t attention_block_scratch_floats(const AttentionArgs& a, int nq, int64_t max_keys) {
  const size_t group = size_t(a.n_heads / a.n_kv_heads);
  return std::max(
      attention_scratch_floats(a, max_keys),
      size_t(nq) * group * (size_t(a.head_dim) + size_t(max_keys + nq)) + 64 * size_t(a.head_dim));
}

size_t attention_split_scratch_floats(const AttentionArgs& a, int nq, int64_t chunk_keys) {
  const size_t rows = size_t(nq) * size_t(a.n_heads);
  return rows * size_t(a.head_dim) + 4 * rows + attention_block_scratch_floats(a, nq, chunk_keys);
}

void attend_block(const AttentionArgs& a, const float* q, size_t q_stride, int64_t p0, int nq,
                  const void* k, const void* v, int h0, int h1, float* out, size_t out_stride,
                  float* scratch, float* stats) {
#if defined(__x86_64__)
  const int group = a.n_heads / a.n_kv_heads;
  if (nq > 1 && !a.kv_f32 && !a.kv_q8 && !a.kv_q4 && !a.kv_bf16 && have_avx2() &&
      a.head_dim % 8 == 0 && h0 / group == (h1 - 1) / group) {
    attend_block_f16(a, q, q_stride, p0, nq, static_cast<const uint16_t*>(k),
                     static_cast<const uint16_t*>(v), h0, h1, out, out_stride, scratch, stats);
    return;
  }
#endif
  // (One token too: the block path widens each key tile once for the group's heads and scores
  // four heads x four keys per pass, where attend_group widens row by row and dots head by
  // head; the same bits either way.)
  if ((a.kv_f32 || a.kv_q8 || a.kv_q4 || a.kv_bf16) &&
      h0 / (a.n_heads / a.n_kv_heads) == (h1 - 1) / (a.n_heads / a.n_kv_heads)) {
    attend_block_widened(a, q, q_stride, p0, nq, k, v, h0, h1, out, out_stride, scratch, stats);
    return;
  }
  for (int i = 0; i < nq; ++i)
    attend_group(a, q + size_t(i) * q_stride, k, v, p0 + i, h0, h1, out + size_t(i) * out_stride,
                 scratch, stats != nullptr ? stats + 2 * size_t(i) * size_t(a.n_heads) : nullptr);
}

void attend_group(const AttentionArgs& a, const float* q, const void* k, const void* v, int64_t pos,
                  int h0, int h1, float* out, float* scores, float* stats) {
  if (a.kv_q8 || a.kv_q4 || a.kv_bf16) {
    return attend_group_dequant(a, kv_dtype(a), q, static_cast<const uint8_t*>(k),
                                static_cast<const uint8_t*>(v), pos, h0, h1, out, scores, stats);
  }
  if (a.kv_f32) {
    attend_heads(a, q, static_cast<const float*>(k), static_cast<const float*>(v), pos, h0, h1, out,
                 scores, stats);
  } else {
    attend_group_f16(a, q, static_cast<const uint16_t*>(k), static_cast<const uint16_t*>(v), pos,
                     h0, h1, out, scores, stats);
  }
}

}  // namespace g4
