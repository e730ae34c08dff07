// The model interface: one forward definition per architecture over a ragged StepBatch.
// The model never loops over generation; callers (CLI generator, server scheduler) do.
#pragma once
#include <memory>
#include <vector>

#include "core/status.h"
#include "core/thread_pool.h"
#include "kernels/dot_simd.h"
#include "kernels/matmul.h"
#include "model/config.h"
#include "model/forward_common.h"
#include "model/moe.h"
#include "runtime/kv_cache.h"
#include "runtime/step_batch.h"

namespace g4 {

class GgufFile;

// Per-execution state: threads and scratch. Buffers grow to a high-water mark and are
// reused, so steady-state decoding allocates nothing. Not shared between concurrent forwards.
struct ExecContext {
  explicit ExecContext(int n_threads) : pool(n_threads), isa(best_isa()) {}
  ThreadPool pool;
  Isa isa;
  bool exact = false;  // f32 activations in every matmul (see kernels/matmul.h)
  MatmulScratch mm;
  Activations act;  // the step's named activations (model/activations.h)
  MoeScratch moe;   // Gemma 4 MoE routing
  // Per-token bookkeeping of a forward (sequence index, position, id) and logit rows; kept
  // here so a steady decode step allocates nothing (tests/unit/alloc_test.cc).
  FlatBatch flat;
  std::vector<int64_t> rows;
  StepProfile* profile = nullptr;  // g4 bench --profile
};

struct ModelOptions {
  EmbedScale embed_scale = EmbedScale::kBf16Rounded;
};

class Model {
 public:
  virtual ~Model() = default;
  virtual const ModelConfig& config() const = 0;
  virtual std::vector<KvLayerGeometry> kv_geometry() const = 0;
  // Appends every SeqStep's tokens to its sequence in `kv` and fills `out` with logits.
  virtual Status forward(const StepBatch& batch, KvCache& kv, ExecContext& ctx,
                         StepOutput& out) const = 0;
  // MoE models: tokens routed to each expert so far, [n_layers][n_experts]; else empty.
  virtual std::vector<std::vector<uint64_t>> expert_load() const { return {}; }
  // Tensors whose matrices got an R16 copy at load (AVX-512 VNNI CPUs; kernels/repack.h).
  virtual std::vector<std::string> packed_matrices() const { return {}; }
  // MoE models: passes over each expert's weight matrices so far (fused gate_up and down count
  // one each; unfused gate, up, down one each), [n_layers][n_experts]; else empty.
  virtual std::vector<std::vector<uint64_t>> expert_weight_reads() const { return {}; }
};

Result<std::unique_ptr<Model>> load_gemma3(const GgufFile& f, const ModelOptions& opts);
Result<std::unique_ptr<Model>> load_gemma4(const GgufFile& f, const ModelOptions& opts);

}  // namespace g4
