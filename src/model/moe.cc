#include "model/moe.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "kernels/ops.h"
#include "model/model.h"

namespace g4 {

namespace {

float* grow(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

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

void moe_route(const MoeLayerView& m, const float* x, int64_t T, int64_t d, float eps,
               ExecContext& ctx, std::vector<MoeRoute>& routes) {
  const int E = m.n_experts;
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
  routes.resize(size_t(T));
  std::vector<int> order(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    float* p = logits + t * E;
    softmax(p, E);
    std::iota(order.begin(), order.end(), 0);
    // Highest probability first; ties go to the lower expert index.
    std::partial_sort(order.begin(), order.begin() + m.n_used, order.end(),
                      [&](int a, int b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
    MoeRoute& rt = routes[size_t(t)];
    rt.experts.assign(order.begin(), order.begin() + m.n_used);
    float sum = 0;
    for (int e : rt.experts) sum += p[e];
    rt.weights.resize(size_t(m.n_used));
    for (int k = 0; k < m.n_used; ++k) {
      const int e = rt.experts[size_t(k)];
      rt.weights[size_t(k)] = p[e] / sum * (m.expert_scale ? m.expert_scale[e] : 1.0f);
    }
  }
}

void moe_forward(const MoeLayerView& m, const float* x, const float* xn, int64_t T, int64_t d,
                 float eps, ExecContext& ctx, float* out, std::atomic<uint64_t>* counts) {
  std::vector<MoeRoute> routes;
  moe_route(m, x, T, d, eps, ctx, routes);
  const int E = m.n_experts;
  const int64_t ff = m.ff;
  // Tokens per expert, and each token's slot in its own sum (index order of experts).
  std::vector<std::vector<std::pair<int64_t, float>>> by_expert(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    const MoeRoute& rt = routes[size_t(t)];
    for (int k = 0; k < m.n_used; ++k)
      by_expert[size_t(rt.experts[size_t(k)])].push_back({t, rt.weights[size_t(k)]});
  }
  std::memset(out, 0, sizeof(float) * size_t(T * d));
  float* xs = grow(ctx.buf[14], size_t(T * d));       // gathered expert inputs
  float* gu = grow(ctx.buf[15], size_t(T * 2 * ff));  // gate | up (fused) or gate
  float* up = grow(ctx.buf[16], size_t(T * ff));      // up (unfused) / activation product
  float* ys = grow(ctx.buf[17], size_t(T * d));       // expert outputs
  for (int e = 0; e < E; ++e) {
    const auto& toks = by_expert[size_t(e)];
    if (toks.empty()) continue;
    const int64_t n = int64_t(toks.size());
    if (counts) counts[e].fetch_add(uint64_t(n), std::memory_order_relaxed);
    for (int64_t i = 0; i < n; ++i)
      std::memcpy(xs + i * d, xn + toks[size_t(i)].first * d, sizeof(float) * size_t(d));
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
      float* o = out + toks[size_t(i)].first * d;
      const float w = toks[size_t(i)].second;
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
