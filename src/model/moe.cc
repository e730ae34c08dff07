#include "model/moe.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "kernels/dot_simd.h"
#include "kernels/ops.h"
#include "kernels/repack.h"
#include "model/model.h"

#include "model/forward_common.h"

namespace g4 {

namespace {

// Rows [r0, r0 + n) of a stacked weight as a weight of its own; its R16 copy too when the
// slice starts on a 16-row group (expert stacks are packed only when every slice does).
WeightView rows_of(const WeightView& w, int64_t r0, int64_t n) {
  WeightView s = w;
  s.data = w.row(r0);
  s.out = n;
  s.packed = w.packed != nullptr && r0 % kPackRows == 0
                 ? w.packed + size_t(r0 / kPackRows) * packed_group_bytes(w.type, w.in)
                 : nullptr;
  return s;
}

float silu(float x) {
  return x / (1.0f + std::exp(-x));
}

}  // namespace

namespace {

// Router into ctx.moe.experts / weights ([T][k] each, by descending probability).
void route(const MoeLayerView& m, const float* x, int64_t T, int64_t d, float eps,
           ExecContext& ctx) {
  const int E = m.n_experts, k = m.n_used;
  float* rin = grow(ctx.act.moe_in, size_t(T * d));
  float* logits = grow(ctx.act.moe_a, size_t(T) * size_t(E));
  const float inv_sqrt_d = 1.0f / std::sqrt(float(d));
  for (int64_t t = 0; t < T; ++t) {
    float* r = rin + t * d;
    rmsnorm(x + t * d, nullptr, r, d, eps);
    for (int64_t i = 0; i < d; ++i) r[i] = r[i] * m.router_scale[i] * inv_sqrt_d;
  }
  // The router is tiny and kept in f32 (spec §2.3): always f32 activations.
  matmul(ctx.pool, *m.router, rin, T, logits, ctx.mm, ctx.isa, /*exact=*/true);
  MoeScratch& s = ctx.moe;
  s.experts.resize(size_t(T) * size_t(k));
  s.weights.resize(size_t(T) * size_t(k));
  s.order.resize(size_t(E));
  for (int64_t t = 0; t < T; ++t) {
    float* p = logits + t * E;
    softmax(p, E);
    std::iota(s.order.begin(), s.order.end(), 0);
    // Highest probability first; ties go to the lower expert index.
    std::partial_sort(s.order.begin(), s.order.begin() + k, s.order.end(),
                      [&](int a, int b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
    float sum = 0;
    for (int j = 0; j < k; ++j) sum += p[s.order[size_t(j)]];
    for (int j = 0; j < k; ++j) {
      const int e = s.order[size_t(j)];
      s.experts[size_t(t * k + j)] = e;
      s.weights[size_t(t * k + j)] = p[e] / sum * (m.expert_scale ? m.expert_scale[e] : 1.0f);
    }
  }
}

}  // namespace

void moe_route(const MoeLayerView& m, const float* x, int64_t T, int64_t d, float eps,
               ExecContext& ctx, std::vector<MoeRoute>& routes) {
  route(m, x, T, d, eps, ctx);
  const size_t k = size_t(m.n_used);
  routes.resize(size_t(T));
  for (size_t t = 0; t < size_t(T); ++t) {
    routes[t].experts.assign(ctx.moe.experts.begin() + long(t * k),
                             ctx.moe.experts.begin() + long((t + 1) * k));
    routes[t].weights.assign(ctx.moe.weights.begin() + long(t * k),
                             ctx.moe.weights.begin() + long((t + 1) * k));
  }
}

namespace {

float act(bool swiglu, float g) {
  return swiglu ? silu(g) : gelu_tanh(g);
}

// Views of expert e's gate and up rows [ff, d] in either layout.
void gate_up_of(const MoeLayerView& m, int e, WeightView& gate, WeightView& up) {
  if (m.gate_up != nullptr) {
    gate = rows_of(*m.gate_up, int64_t(e) * 2 * m.ff, m.ff);
    up = rows_of(*m.gate_up, int64_t(e) * 2 * m.ff + m.ff, m.ff);
  } else {
    gate = rows_of(*m.gate, int64_t(e) * m.ff, m.ff);
    up = rows_of(*m.up, int64_t(e) * m.ff, m.ff);
  }
}

// One activation row prepared for one weight's one-token kernels (at one token the
// preparation is cheap, so each weight gets its own even when layouts coincide): the R16
// group kernel when the weight has a packed copy that this CPU runs (the matmul's own choice,
// so the one-token path gives the grouped path's bits), else the row dot product.
struct Prepared {
  KernelSet ks;
  PackedGroupFn group = nullptr;
  void (*prep)(const float*, void*, int64_t) = nullptr;
  size_t (*bytes)(int64_t) = nullptr;
  const uint8_t* a = nullptr;
  void init(const WeightView& w, Isa isa, bool allow_packed) {
    const PackedKernels& pk = packed_kernels(isa);
    if (allow_packed && w.packed != nullptr && pk.prepare != nullptr) {
      const PackKind kind = pack_kind(w.type);
      group = pk.group[int(kind) - 1][0];
      prep = pack_float_kind(kind) ? prepare_packed_f32 : pk.prepare;
      bytes = pack_float_kind(kind) ? packed_act_bytes_f32 : pk.act_bytes;
    } else {
      ks = kernels_for(w.type, isa);
      G4_CHECK(ks.dot1 != nullptr);
      prep = ks.prepare;
      bytes = ks.act_bytes;
    }
  }
  bool packed() const { return group != nullptr; }
  float dot(const WeightView& w, int64_t row) const { return ks.dot1(w.in, w.row(row), a); }
  // out[0..16) = rows [r0, r0 + 16) of w (r0 a multiple of 16).
  void group16(const WeightView& w, int64_t r0, float* out) const {
    const void* act = a;
    group(w.in, w.packed + size_t(r0 / kPackRows) * packed_group_bytes(w.type, w.in), &act, out,
          kPackRows);
  }
  // out[i] = row r0 + i of w for i < n: groups of 16 where packed (r0 and n multiples of 16).
  void rows(const WeightView& w, int64_t r0, int64_t n, float* out) const {
    if (!packed()) {
      for (int64_t i = 0; i < n; ++i) out[i] = dot(w, r0 + i);
      return;
    }
    for (int64_t i = 0; i < n; i += kPackRows) group16(w, r0 + i, out + i);
  }
};

// One token, default numerics: out[d] = Σ_j w_j · down_j(act(gate_j·xn) ⊙ up_j·xn) over the
// token's k experts in index order (as the grouped path sums), and, when given, the layer's
// shared GeGLU MLP. Two pool jobs in all: every gate/up row with its activation, then every
// down row with the expert sum. The dot products are the 1-token kernels, which the grouped
// path's 4/8-token kernels equal bit for bit, and the shared MLP's arithmetic is dense
// GeGLU's (gelu_tanh(g) * u), so the result equals the multi-token path exactly.
void forward_one_token(const MoeLayerView& m, const float* xn, int64_t d, ExecContext& ctx,
                       float* out, MoeLayerCounters counters, const MoeSharedMlp* sh) {
  G4_CHECK(sh != nullptr && sh->gate != nullptr && sh->up != nullptr && sh->down != nullptr);
  MoeScratch& s = ctx.moe;
  const int k = m.n_used;
  const int64_t ff = m.ff, ffs = sh != nullptr ? sh->gate->out : 0;
  // The token's experts in index order, with their weights.
  s.tok.assign(s.experts.begin(), s.experts.begin() + k);
  s.tok_w.assign(s.weights.begin(), s.weights.begin() + k);
  for (int i = 1; i < k; ++i)  // insertion sort, k is small
    for (int j = i; j > 0 && s.tok[size_t(j - 1)] > s.tok[size_t(j)]; --j) {
      std::swap(s.tok[size_t(j - 1)], s.tok[size_t(j)]);
      std::swap(s.tok_w[size_t(j - 1)], s.tok_w[size_t(j)]);
    }
  WeightView g0, u0;
  gate_up_of(m, s.tok[0], g0, u0);  // layout and types are the same for every expert
  // Activation buffers: [0] expert gate, [1] expert up, [2] shared gate, [3] shared up,
  // [4] shared down, [5 + j] expert j's down input.
  const WeightView* ws[5] = {&g0, &u0, sh ? sh->gate : nullptr, sh ? sh->up : nullptr,
                             sh ? sh->down : nullptr};
  const int64_t ins[5] = {d, d, d, d, ffs};
  G4_CHECK(k <= 8);
  Prepared pre[5 + 8];
  size_t total = 0, offs[5 + 8] = {};
  const int n_act = 5 + k;
  // Packed rows go 16 at a time: every part's rows (and so every boundary of the jobs' row
  // ranges, slices of 16) must fall on 16-row groups, or all take the row kernels.
  const bool aligned = ffs % kPackRows == 0 && ff % kPackRows == 0 && d % kPackRows == 0;
  for (int i = 0; i < n_act; ++i) {
    const WeightView* w = i < 5 ? ws[i] : m.down;
    if (w == nullptr) continue;
    pre[i].init(*w, ctx.isa, aligned);
    offs[i] = total;
    total += pre[i].bytes(i < 5 ? ins[i] : ff);
  }
  if (s.acts.size() < total) s.acts.resize(total);
  for (int i = 0; i < n_act; ++i) pre[i].a = s.acts.data() + offs[i];
  pre[0].prep(xn, s.acts.data() + offs[0], d);
  pre[1].prep(xn, s.acts.data() + offs[1], d);
  if (sh != nullptr) {
    pre[2].prep(sh->in, s.acts.data() + offs[2], d);
    pre[3].prep(sh->in, s.acts.data() + offs[3], d);
  }
  // Job 1 over [shared rows | expert 0 rows | expert 1 rows | ...], 16 rows at a time.
  float* hs = grow(ctx.act.moe_a, size_t(ffs));            // shared GeGLU product
  float* a = grow(ctx.act.moe_b, size_t(k) * size_t(ff));  // [k, ff] expert activation products
  ctx.pool.parallel_for(size_t(ffs) + size_t(k) * size_t(ff), 16, [&](size_t b, size_t e, int) {
    float gv[kPackRows], uv[kPackRows];
    for (size_t r = b; r < std::min(e, size_t(ffs)); r += kPackRows) {
      const int64_t n = std::min<int64_t>(kPackRows, int64_t(std::min(e, size_t(ffs)) - r));
      pre[2].rows(*sh->gate, int64_t(r), n, gv);
      pre[3].rows(*sh->up, int64_t(r), n, uv);
      for (int64_t i = 0; i < n; ++i) hs[r + size_t(i)] = gelu_tanh(gv[i]) * uv[i];
    }
    for (int j = 0; j < k; ++j) {
      const size_t base = size_t(ffs) + size_t(j) * size_t(ff);
      const size_t lo = std::max(b, base), hi = std::min(e, base + size_t(ff));
      if (lo >= hi) continue;
      WeightView g, u;
      gate_up_of(m, s.tok[size_t(j)], g, u);
      for (size_t r = lo; r < hi; r += kPackRows) {
        const int64_t row = int64_t(r - base), n = std::min<int64_t>(kPackRows, int64_t(hi - r));
        pre[0].rows(g, row, n, gv);
        pre[1].rows(u, row, n, uv);
        for (int64_t i = 0; i < n; ++i)
          a[r - size_t(ffs) + size_t(i)] = act(m.swiglu, gv[i]) * uv[i];
      }
    }
  });
  if (sh != nullptr) pre[4].prep(hs, s.acts.data() + offs[4], ffs);
  for (int j = 0; j < k; ++j)
    pre[5 + j].prep(a + size_t(j) * size_t(ff), s.acts.data() + offs[5 + j], ff);
  // Job 2 over the d output rows: shared down, and the experts' down rows with their sum (in
  // expert order, as the grouped path adds them).
  ctx.pool.parallel_for(size_t(d), 16, [&](size_t b, size_t e, int) {
    float dv[kPackRows];
    for (size_t r = b; r < e; r += kPackRows) {
      const int64_t n = std::min<int64_t>(kPackRows, int64_t(e - r));
      if (sh != nullptr) pre[4].rows(*sh->down, int64_t(r), n, sh->out + r);
      float o[kPackRows] = {};
      for (int j = 0; j < k; ++j) {
        pre[5 + j].rows(*m.down, int64_t(s.tok[size_t(j)]) * d + int64_t(r), n, dv);
        for (int64_t i = 0; i < n; ++i) o[i] += s.tok_w[size_t(j)] * dv[i];
      }
      std::memcpy(out + r, o, sizeof(float) * size_t(n));
    }
  });
  for (int j = 0; j < k; ++j) {
    const int e = s.tok[size_t(j)];
    if (counters.tokens) counters.tokens[e].fetch_add(1, std::memory_order_relaxed);
    if (counters.reads)
      counters.reads[e].fetch_add(uint64_t(moe_matrices_per_expert(m)), std::memory_order_relaxed);
  }
}

}  // namespace

bool moe_one_token_path(int64_t T, const ExecContext& ctx, const MoeLayerView& m) {
  return T == 1 && !ctx.exact && m.n_used <= 8;
}

void moe_forward_one_token(const MoeLayerView& m, const float* x, const float* xn, int64_t d,
                           float eps, ExecContext& ctx, float* out, MoeLayerCounters counters,
                           const MoeSharedMlp& shared) {
  G4_CHECK(moe_one_token_path(1, ctx, m));
  route(m, x, 1, d, eps, ctx);
  forward_one_token(m, xn, d, ctx, out, counters, &shared);
}

void moe_forward(const MoeLayerView& m, const float* x, const float* xn, int64_t T, int64_t d,
                 float eps, ExecContext& ctx, float* out, MoeLayerCounters counters) {
  route(m, x, T, d, eps, ctx);  // grouped path for any T (decoding uses moe_forward_one_token)
  const int E = m.n_experts;
  const int64_t ff = m.ff, TK = T * m.n_used;
  // Group (token, weight) pairs by expert with a counting sort, tokens ascending per expert.
  MoeScratch& s = ctx.moe;
  s.start.assign(size_t(E) + 1, 0);
  for (int64_t i = 0; i < TK; ++i) ++s.start[size_t(s.experts[size_t(i)]) + 1];
  for (int e = 0; e < E; ++e) s.start[size_t(e) + 1] += s.start[size_t(e)];
  s.tok.resize(size_t(TK));
  s.tok_w.resize(size_t(TK));
  s.order.assign(s.start.begin(), s.start.end() - 1);  // next free slot per expert
  for (int64_t i = 0; i < TK; ++i) {
    const size_t at = size_t(s.order[size_t(s.experts[size_t(i)])]++);
    s.tok[at] = int32_t(i / m.n_used);
    s.tok_w[at] = s.weights[size_t(i)];
  }
  std::memset(out, 0, sizeof(float) * size_t(T * d));
  float* xs = grow(ctx.act.moe_in, size_t(T * d));  // gathered expert inputs
  float* gs = grow(ctx.act.moe_a, size_t(T * ff));  // gate
  float* up = grow(ctx.act.moe_b, size_t(T * ff));  // up, then the activation product
  float* ys = grow(ctx.act.moe_y, size_t(T * d));   // expert outputs
  for (int e = 0; e < E; ++e) {
    const int64_t b = s.start[size_t(e)], n = s.start[size_t(e) + 1] - b;
    if (n == 0) continue;
    if (counters.tokens) counters.tokens[e].fetch_add(uint64_t(n), std::memory_order_relaxed);
    for (int64_t i = 0; i < n; ++i)
      std::memcpy(xs + i * d, xn + int64_t(s.tok[size_t(b + i)]) * d, sizeof(float) * size_t(d));
    // up[i] = act(gate·x) ⊙ (up·x): gate and up in one job (one pass over each matrix),
    // the activation fused as the job's epilogue on each thread's rows.
    WeightView gw, uw;
    gate_up_of(m, e, gw, uw);
    const MatmulOut outs[2] = {{&gw, gs}, {&uw, up}};
    const auto act_rows = [&](size_t r0, size_t r1, int) {
      for (int64_t i = 0; i < n; ++i)
        for (size_t j = r0; j < r1; ++j) {
          const size_t at = size_t(i * ff) + j;
          up[at] = act(m.swiglu, gs[at]) * up[at];
        }
    };
    const RowEpilogue epi = act_rows;  // a reference: act_rows must outlive it
    matmul_multi(ctx.pool, outs, 2, xs, n, ctx.mm, ctx.isa, ctx.exact, &epi);
    matmul(ctx.pool, rows_of(*m.down, int64_t(e) * d, d), up, n, ys, ctx.mm, ctx.isa, ctx.exact);
    if (counters.reads)
      counters.reads[e].fetch_add(uint64_t(moe_matrices_per_expert(m)), std::memory_order_relaxed);
    for (int64_t i = 0; i < n; ++i) {
      float* o = out + int64_t(s.tok[size_t(b + i)]) * d;
      const float w = s.tok_w[size_t(b + i)];
      const float* y = ys + i * d;
      for (int64_t j = 0; j < d; ++j) o[j] += w * y[j];
    }
  }
}

std::vector<std::vector<uint64_t>> MoeCounters::snapshot(int which) const {
  const size_t base = size_t(which) * size_t(n_layers_) * size_t(n_experts_);
  std::vector<std::vector<uint64_t>> s(static_cast<size_t>(n_layers_));
  for (auto& row : s) row.resize(static_cast<size_t>(n_experts_));
  for (int l = 0; l < n_layers_; ++l)
    for (int e = 0; e < n_experts_; ++e)
      s[size_t(l)][size_t(e)] =
          c_[base + size_t(l) * size_t(n_experts_) + size_t(e)].load(std::memory_order_relaxed);
  return s;
}

void MoeCounters::reset() {
  for (size_t i = 0; i < 2 * size_t(n_layers_) * size_t(n_experts_); ++i) c_[i].store(0);
}

MoeLoadSummary summarize_expert_load(const std::vector<uint64_t>& counts) {
  MoeLoadSummary r;
  if (counts.empty()) return r;
  r.min = counts[0];
  for (uint64_t c : counts) {
    r.total += c;
    r.max = std::max(r.max, c);
    r.min = std::min(r.min, c);
    if (c == 0) ++r.unused;
  }
  const double E = double(counts.size());
  r.mean = double(r.total) / E;
  if (r.total == 0) return r;
  r.max_over_mean = double(r.max) / r.mean;
  for (uint64_t c : counts) {
    if (c == 0) continue;
    const double p = double(c) / double(r.total);
    r.entropy -= p * std::log2(p);
  }
  r.entropy_norm = counts.size() > 1 ? r.entropy / std::log2(E) : 1.0;
  return r;
}

}  // namespace g4
