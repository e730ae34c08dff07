#include "model/moe.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "kernels/ops.h"
#include "model/model.h"

#include "model/forward_common.h"

namespace g4 {

namespace {

// Rows [r0, r0 + n) of a stacked weight as a weight of its own.
WeightView rows_of(const WeightView& w, int64_t r0, int64_t n) {
  WeightView s = w;
  s.data = w.row(r0);
  s.out = n;
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
  float* rin = grow(ctx.buf[14], size_t(T * d));
  float* logits = grow(ctx.buf[15], size_t(T) * size_t(E));
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

void moe_forward(const MoeLayerView& m, const float* x, const float* xn, int64_t T, int64_t d,
                 float eps, ExecContext& ctx, float* out, std::atomic<uint64_t>* counts) {
  route(m, x, T, d, eps, ctx);
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
  float* xs = grow(ctx.buf[14], size_t(T * d));       // gathered expert inputs
  float* gu = grow(ctx.buf[15], size_t(T * 2 * ff));  // gate | up (fused) or gate
  float* up = grow(ctx.buf[16], size_t(T * ff));      // up (unfused) / activation product
  float* ys = grow(ctx.buf[17], size_t(T * d));       // expert outputs
  for (int e = 0; e < E; ++e) {
    const int64_t b = s.start[size_t(e)], n = s.start[size_t(e) + 1] - b;
    if (n == 0) continue;
    if (counts) counts[e].fetch_add(uint64_t(n), std::memory_order_relaxed);
    for (int64_t i = 0; i < n; ++i)
      std::memcpy(xs + i * d, xn + int64_t(s.tok[size_t(b + i)]) * d, sizeof(float) * size_t(d));
    // act[i] = act(gate·x) ⊙ (up·x), packed [n, ff] in `up`.
    if (m.gate_up != nullptr) {
      const WeightView w = rows_of(*m.gate_up, int64_t(e) * 2 * ff, 2 * ff);
      matmul(ctx.pool, w, xs, n, gu, ctx.mm, ctx.isa, ctx.exact);
      for (int64_t i = 0; i < n; ++i) {
        const float* g = gu + i * 2 * ff;
        const float* u = g + ff;
        float* a = up + i * ff;
        for (int64_t j = 0; j < ff; ++j) a[j] = (m.swiglu ? silu(g[j]) : gelu_tanh(g[j])) * u[j];
      }
    } else {
      matmul(ctx.pool, rows_of(*m.gate, int64_t(e) * ff, ff), xs, n, gu, ctx.mm, ctx.isa,
             ctx.exact);
      matmul(ctx.pool, rows_of(*m.up, int64_t(e) * ff, ff), xs, n, up, ctx.mm, ctx.isa, ctx.exact);
      for (int64_t i = 0; i < n * ff; ++i)
        up[i] = (m.swiglu ? silu(gu[i]) : gelu_tanh(gu[i])) * up[i];
    }
    matmul(ctx.pool, rows_of(*m.down, int64_t(e) * d, d), up, n, ys, ctx.mm, ctx.isa, ctx.exact);
    for (int64_t i = 0; i < n; ++i) {
      float* o = out + int64_t(s.tok[size_t(b + i)]) * d;
      const float w = s.tok_w[size_t(b + i)];
      const float* y = ys + i * d;
      for (int64_t j = 0; j < d; ++j) o[j] += w * y[j];
    }
  }
}

std::vector<std::vector<uint64_t>> MoeCounters::snapshot() const {
  std::vector<std::vector<uint64_t>> s(static_cast<size_t>(n_layers_));
  for (auto& row : s) row.resize(static_cast<size_t>(n_experts_));
  for (int l = 0; l < n_layers_; ++l)
    for (int e = 0; e < n_experts_; ++e)
      s[size_t(l)][size_t(e)] = layer(l)[e].load(std::memory_order_relaxed);
  return s;
}

void MoeCounters::reset() {
  for (size_t i = 0; i < size_t(n_layers_) * size_t(n_experts_); ++i) c_[i].store(0);
}

}  // namespace g4
