// Mixture-of-experts FFN (Gemma 4 26B-A4B, ref: gemma-architecture.md §2.3, §6.13).
//
//   r = W_router · (rmsnorm_unweighted(x) ⊙ router_scale · d^-0.5)      router logits [E]
//   p = softmax(r) over all E;  S = top-k of p;  w_e = p_e / Σ_S p · expert_scale[e]
//   y = Σ_{e∈S} w_e · down_e( act(gate_e·xn) ⊙ up_e·xn )               act = GELU-tanh or SiLU
//
// x is the router input (the residual stream), xn the experts' input (pre_ffw_norm_2(x)).
// Tokens are grouped per expert so each expert's weights are streamed once per step; each
// token's sum runs over its experts in index order, so results do not depend on the batch.
// One token (decode, moe_forward_one_token): the shared MLP's and the chosen experts' gate/up
// rows run in one thread-pool job and all down rows plus the weighted sum in a second, so a
// step pays two hand-offs whatever k is (the same dot products as the grouped path,
// bit-identical).
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
  std::vector<uint8_t> acts;                        // one-token path: prepared activations
};

// One layer's counters (see MoeCounters); either pointer may be null.
struct MoeLayerCounters {
  std::atomic<uint64_t>* tokens = nullptr;  // [E] tokens routed to each expert
  std::atomic<uint64_t>* reads = nullptr;   // [E] passes over each expert's weight matrices
};

// Router only: fills routes[t] for T tokens from router input x [T, d].
void moe_route(const MoeLayerView& m, const float* x, int64_t T, int64_t d, float eps,
               ExecContext& ctx, std::vector<MoeRoute>& routes);

// Full block, grouped path (any T): out[T, d] = Σ experts. Counters are incremented where tokens
// are routed and where an expert's matrices are streamed (one read per matrix pass: fused gate_up
// and down, or gate, up and down).
void moe_forward(const MoeLayerView& m, const float* x, const float* xn, int64_t T, int64_t d,
                 float eps, ExecContext& ctx, float* out, MoeLayerCounters counters = {});

// The layer's shared dense GeGLU MLP, for the one-token path below:
// out = down(gelu_tanh(gate·in) ⊙ up·in).
struct MoeSharedMlp {
  const WeightView* gate = nullptr;  // [ffs, d]
  const WeightView* up = nullptr;    // [ffs, d]
  const WeightView* down = nullptr;  // [d, ffs]
  const float* in = nullptr;         // [d]
  float* out = nullptr;              // [d]
};
// Whether a step of T tokens takes the one-token path (default numerics, k <= 8).
bool moe_one_token_path(int64_t T, const ExecContext& ctx, const MoeLayerView& m);
// One token: the experts (out, as moe_forward) and the shared MLP (shared.out) together, in two
// thread-pool jobs for the whole FFN; results equal the separate multi-token computations bit
// for bit. Only when moe_one_token_path(1, ...).
void moe_forward_one_token(const MoeLayerView& m, const float* x, const float* xn, int64_t d,
                           float eps, ExecContext& ctx, float* out, MoeLayerCounters counters,
                           const MoeSharedMlp& shared);

// Weight matrices an expert has in this layout (2 fused gate_up + down, else 3).
inline int moe_matrices_per_expert(const MoeLayerView& m) {
  return m.gate_up != nullptr ? 2 : 3;
}

// Per-layer, per-expert counters: routed tokens (router statistics, `g4 inspect --moe-stats`)
// and expert weight-matrix reads (tests assert that a prefill step reads each chosen expert's
// matrices once per layer and a decode step touches only the chosen experts). Thread-safe.
class MoeCounters {
 public:
  MoeCounters() = default;
  MoeCounters(int n_layers, int n_experts)
      : n_layers_(n_layers),
        n_experts_(n_experts),
        c_(new std::atomic<uint64_t>[2 * size_t(n_layers) * size_t(n_experts)]()) {}
  MoeLayerCounters layer(int l) const {
    const size_t n = size_t(n_layers_) * size_t(n_experts_), at = size_t(l) * size_t(n_experts_);
    return {c_.get() + at, c_.get() + n + at};
  }
  // Snapshots [n_layers][n_experts].
  std::vector<std::vector<uint64_t>> tokens() const { return snapshot(0); }
  std::vector<std::vector<uint64_t>> reads() const { return snapshot(1); }
  void reset();

 private:
  std::vector<std::vector<uint64_t>> snapshot(int which) const;
  int n_layers_ = 0, n_experts_ = 0;
  std::unique_ptr<std::atomic<uint64_t>[]> c_;
};

// Load-balance summary of one layer's per-expert token counts.
struct MoeLoadSummary {
  uint64_t total = 0;         // routed (token, expert) pairs = tokens * k
  uint64_t max = 0, min = 0;  // busiest / idlest expert's tokens
  double mean = 0;            // total / n_experts
  double max_over_mean = 0;   // 1 = perfectly balanced; 0 when nothing was routed
  double entropy = 0;         // of the load distribution, in bits
  double entropy_norm = 0;    // entropy / log2(n_experts): 1 = uniform
  int unused = 0;             // experts that received no token
};
MoeLoadSummary summarize_expert_load(const std::vector<uint64_t>& counts);

}  // namespace g4
