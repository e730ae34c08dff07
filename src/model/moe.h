// Mixture-of-experts FFN (Gemma 4 26B-A4B, ref: gemma-architecture.md §2.3, §6.13).
//
//   r = W_router · (rmsnorm_unweighted(x) ⊙ router_scale · d^-0.5)      router logits [E]
//   p = softmax(r) over all E;  S = top-k of p;  w_e = p_e / Σ_S p · expert_scale[e]
//   y = Σ_{e∈S} w_e · down_e( act(gate_e·xn) ⊙ up_e·xn )               act = GELU-tanh or SiLU
//
// x is the router input (the residual stream), xn the experts' input (pre_ffw_norm_2(x)).
// Tokens are grouped per expert so each expert's weights are streamed once per step; each
// token's sum runs over its experts in index order, so results do not depend on the batch.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/matmul.h"

namespace g4 {

struct ExecContext;

struct MoeLayerView {
  const WeightView* router = nullptr;   // [E, d], f32 in practice
  const float* router_scale = nullptr;  // [d]
  const WeightView* gate_up = nullptr;  // fused [E * 2*ff, d] (gate rows, then up rows), or
  const WeightView* gate = nullptr;     // unfused [E * ff, d]
  const WeightView* up = nullptr;       // unfused [E * ff, d]
  const WeightView* down = nullptr;     // [E * d, ff]
  const float* expert_scale = nullptr;  // [E] or nullptr (= 1)
  int n_experts = 0;
  int n_used = 0;
  int64_t ff = 0;
  bool swiglu = false;  // SiLU instead of GELU-tanh in the experts
};

// Routing decision for one token (exposed for tests and statistics).
struct MoeRoute {
  std::vector<int> experts;    // top-k, by descending probability
  std::vector<float> weights;  // renormalised, times expert_scale
};

// Routing scratch, kept in ExecContext so steady-state decoding allocates nothing.
struct MoeScratch {
  std::vector<int32_t> experts, order, start, tok;  // [T*k], [E], [E+1], [T*k]
  std::vector<float> weights, tok_w;                // [T*k], [T*k]
};

// Router only: fills routes[t] for T tokens from router input x [T, d].
void moe_route(const MoeLayerView& m, const float* x, int64_t T, int64_t d, float eps,
               ExecContext& ctx, std::vector<MoeRoute>& routes);

// Full block: out[T, d] = Σ experts. counts (may be null): per-expert token counters [E].
void moe_forward(const MoeLayerView& m, const float* x, const float* xn, int64_t T, int64_t d,
                 float eps, ExecContext& ctx, float* out, std::atomic<uint64_t>* counts);

// Per-layer, per-expert routed-token counters (router statistics, e.g. for
// `g4 inspect --moe-stats`). Thread-safe increments.
class MoeCounters {
 public:
  MoeCounters() = default;
  MoeCounters(int n_layers, int n_experts)
      : n_layers_(n_layers),
        n_experts_(n_experts),
        c_(new std::atomic<uint64_t>[size_t(n_layers) * size_t(n_experts)]()) {}
  std::atomic<uint64_t>* layer(int l) const { return c_.get() + size_t(l) * size_t(n_experts_); }
  // Snapshot [n_layers][n_experts].
  std::vector<std::vector<uint64_t>> snapshot() const;
  void reset();

 private:
  int n_layers_ = 0, n_experts_ = 0;
  std::unique_ptr<std::atomic<uint64_t>[]> c_;
};

}  // namespace g4
