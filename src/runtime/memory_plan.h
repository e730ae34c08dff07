// KV memory arithmetic for `g4 plan`, the server's /metrics and admission (issue 14),
// model-free: it sees only the per-layer KV geometry (KvLayerGeometry, from
// Model::kv_geometry() or kv_geometry_for(ModelConfig)).
//
// The layout it plans for (runtime/kv_cache.h):
// - global layers (window 0, donor < 0) are paged: blocks of block_tokens positions in one
//   block-id space shared by all global layers; a sequence of L positions holds
//   ceil(L / block_tokens) blocks; a block costs 2 (K, V) x block_tokens x n_kv_heads x
//   head_dim x element bytes per owning global layer. The pool is committed lazily, so
//   resident memory is the blocks in use.
// - sliding layers (window > 0, donor < 0): per sequence a ring of
//   min(n_ctx, window + max(max_chunk, ring_slack)) slots, K and V.
// - layers with donor >= 0 (Gemma 4 KV sharing) own nothing.
// Element sizes: f32 4 bytes, f16/bf16 2, q8_0 34 per 32 values, q4_0 18 per 32 values (ggml
// blocks, ../shared/docs/formats.md); a row that is not a multiple of 32 values is rounded
// up to whole blocks.
// Pure functions; thread-safe.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/status.h"
#include "runtime/kv_cache.h"

namespace g4 {

enum class KvType { kF32, kF16, kBf16, kQ8_0, kQ4_0 };

// "f32", "f16", "bf16", "q8_0", "q4_0" (case-insensitive).
Result<KvType> parse_kv_type(const std::string& s);
const char* kv_type_name(KvType t);
// Bytes of one row of n values.
int64_t kv_row_bytes(KvType t, int64_t n);

struct KvPlanOptions {
  int64_t n_ctx = 4096;     // positions each sequence holds (the plan assumes full sequences)
  int64_t parallel = 1;     // sequences
  int64_t max_chunk = 512;  // prefill chunk: sliding rings hold window + max(chunk, slack)
  int64_t ring_slack = 0;   // the server's --swa-slack
  KvType global_type = KvType::kF16;
  KvType sliding_type = KvType::kF16;
  int block_tokens = 256;  // rounded up to a power of two, no longer than n_ctx needs
  // Sparse attention routing keeps per selection page (page_tokens positions, at most a
  // block) and owning global layer a key summary [n_kv_heads][min, max][head_dim] f16 beside
  // K and V (runtime/kv_cache.h).
  bool sparse = false;
  int page_tokens = SparseAttentionOptions{}.page_tokens;
};

// One layer type's share.
struct KvTypePlan {
  std::string kind;             // "global" (paged), "sliding" (rings), "shared" (none)
  int layers = 0;               // layers of this kind
  KvType type = KvType::kF16;   // element type
  int64_t bytes_per_token = 0;  // K+V of one position over all layers of the kind
  int64_t slots_per_seq = 0;    // global: blocks x block_tokens; sliding: largest ring
  int64_t bytes_per_seq = 0;    // one full sequence
  int64_t bytes = 0;            // all sequences
};

struct KvPlan {
  std::vector<KvTypePlan> types;  // global, sliding, shared, in that order (always all three)
  int block_tokens = 0;           // after rounding
  int64_t blocks_per_seq = 0;     // global-layer blocks a full sequence holds
  int64_t block_bytes = 0;        // one block over all owning global layers (+ summaries)
  int64_t bytes_per_seq = 0;
  int64_t bytes = 0;  // all sequences
};

// The runtime's block size for a request of block_tokens and a context of n_ctx (the same
// rule as KvCache).
int kv_block_size(int block_tokens, int64_t n_ctx);

KvPlan plan_kv(const std::vector<KvLayerGeometry>& layers, const KvPlanOptions& o);

// "16GiB", "512MiB", "1.5G", "123456", "64k" -> bytes. K/M/G/T (and KB, MB, ...) are
// decimal powers of 1000, KiB/MiB/GiB/TiB powers of 1024; a bare number is bytes.
Result<int64_t> parse_byte_size(const std::string& s);
// 1536 -> "1.50 KiB"; under 1 KiB: "123 B".
std::string format_bytes(int64_t n);

// Largest x in [lo, hi] with fits(x), for a fits that is true up to some point and false
// after it (monotone); lo - 1 when even lo does not fit.
int64_t largest_fitting(int64_t lo, int64_t hi, const std::function<bool(int64_t)>& fits);

}  // namespace g4
