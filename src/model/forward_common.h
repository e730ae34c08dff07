// Pieces of the forward pass shared by the Gemma architectures (gemma3.cc, gemma4.cc):
// batch validation and flattening, and the output head (final norm, tied LM head, softcap).
#pragma once
#include <chrono>
#include <cstdint>
#include <utility>
#include <vector>

#include "core/status.h"
#include "kernels/attention.h"
#include "kernels/matmul.h"
#include "model/activations.h"
#include "runtime/kv_cache.h"
#include "runtime/step_batch.h"

namespace g4 {

struct ExecContext;

// The batch's tokens in order: owning SeqStep index, position, id.
struct FlatBatch {
  std::vector<int> tok_seq;
  std::vector<int64_t> tok_pos;
  std::vector<int32_t> ids;
  std::vector<std::pair<int, int64_t>> ends;  // per sequence: its length after the step
};

// Checks every SeqStep against the cache (known sequence, contiguous position, chunk and
// context limits, token ids < vocab), then reserves the KV blocks the step writes (all or
// none: "KV memory full" changes nothing) before any state is touched.
Status flatten_batch(const StepBatch& batch, KvCache& kv, int vocab, FlatBatch& fb);

// Where the keys of one query block (nq consecutive tokens p0.. of a sequence) come from for
// one KV head: the cache's view, or, for a token that sparse routing routes (global layers of
// a cache with sparse routing, from sparse.min_context on, decoding or sparse.prefill), the
// pages select_pages chooses, as a virtual paged sequence whose table lives in `table`
// (the same pages for every head of the group). p0: the first query's position in a's key
// positions; chunks: its split (attention_key_chunks of the last query).
struct KeySource {
  AttentionArgs a;
  const void* k = nullptr;
  const void* v = nullptr;
  int64_t p0 = 0;
  int64_t chunks = 1;
};
// Sparse routing's decision for one (query block, KV head): routed, or not (then nothing
// else is set); pages [1, to) of s need scores (score_pages with q, the group's queries).
struct PageScoring {
  bool routed = false;
  BlockSummaries s;
  int64_t n_pages = 0, budget = 0, to = 1;
  int recent = 0;
  const float* q = nullptr;
  // The routing's oracle_rank: scores are the exact best q.k over the page's keys (from w).
  bool oracle = false;
  KvView w;
  int kvh = 0;
};
PageScoring page_scoring(const AttentionArgs& args, const KvCache& kv, int seq, int layer,
                         const float* q_tok, int64_t p0, int nq, bool decoding, int kvh);
// scores[from..to) of ps's pages: score_pages' bounds, or the oracle's exact best q.k.
void score_page_range(const AttentionArgs& args, const PageScoring& ps, int64_t from, int64_t to,
                      float* scores);
// scored: this unit's page_scoring, whose scores `bound` already holds (attention_op splits
// the scoring across threads); nullptr: key_source decides and scores the pages itself.
KeySource key_source(const AttentionArgs& args, const KvCache& kv, int seq, int layer,
                     const float* q_tok, int64_t p0, int nq, bool decoding, int kvh,
                     std::vector<int32_t>& table, std::vector<float>& bound,
                     const PageScoring* scored = nullptr);
// Chunk c of the source's keys for the block's heads [h0, h1) (one KV head): out rows and
// stats ([nq][n_heads][2]) as attend_block's.
void attend_source_chunk(const KeySource& src, const float* q, size_t qd, int nq, int h0, int h1,
                         int64_t c, float* out, float* stats, float* scratch);
// attention_merge of a chunk's rows (part, laid out as out) into out, for every token and head.
void merge_chunk(const AttentionArgs& a, int nq, size_t qd, int h0, int h1, float* out,
                 float* stats, const float* part, const float* part_stats);

// Attention of nq consecutive tokens p0.. of one sequence (rows qd floats apart) over its
// cache of `layer`, heads [h0, h1): per KV head its key_source, then the chunks of the split
// (attention_key_chunks) one after another, each merged into out in order. Tokens that sparse
// routing routes go one by one. Bit for bit the same per token as one-token calls, and as
// attention_op's chunk-parallel decode. decoding: the token is its sequence's only one in the
// step (prompt tokens are routed only with sparse.prefill).
// scratch: attention_split_scratch_floats(args, nq, chunk keys).
void attend_cached_block(const AttentionArgs& args, const KvCache& kv, int seq, int layer,
                         const float* q, size_t qd, int64_t p0, int nq, bool decoding, int h0,
                         int h1, float* out, float* scratch);
// attend_cached_block for one token (q_tok, out_tok: its [n_heads][head_dim] rows).
void attend_cached(const AttentionArgs& args, const KvCache& kv, int seq, int layer,
                   const float* q_tok, int64_t pos, bool decoding, int h0, int h1, float* out_tok,
                   float* scratch);

// The cache's row format in the attention arguments (f16, f32, q8_0, ...).
inline void set_kv_format(AttentionArgs& a, const KvCache& kv) {
  a.kv_f32 = kv.is_f32();
  a.kv_q8 = kv.type() == KvCacheType::kQ8_0;
  a.kv_q4 = kv.type() == KvCacheType::kQ4_0;
  a.kv_bf16 = kv.type() == KvCacheType::kBF16;
}

// After a step stored its K/V rows: brings sparse routing's block summaries up to date for
// every sequence of the batch (nothing without sparse routing or for sliding layers).
void summarize_step(const StepBatch& batch, KvCache& kv, int layer);

// Per-token norm/residual loops run on the pool from this many tokens up (below it, a
// barrier costs more than the loop).
constexpr size_t kNormGrain = 16;

// Attention jobs in token order 0, T-1, 1, T-2, ...: causal attention work grows with the
// position, and the thread pool cuts [0, n) into contiguous slices, so in plain order the
// last thread got the longest rows (3x the first's in a fresh 2-thread prefill).
inline size_t zigzag_token(size_t j, size_t T) {
  return j % 2 == 0 ? j / 2 : T - 1 - j / 2;
}

// Query heads per attention job (token, heads [h0, h0 + n)): the largest divisor of the GQA
// group that still gives each thread the same number of jobs, or at least two. The heads of
// a job share each widened K/V row and run their dot products side by side; a head's
// arithmetic is the same for any grouping. Prefill gets whole groups; a 2-thread decode of
// Gemma 3 270M (4 heads, 1 KV head) two heads per job instead of one.
inline int attention_heads_per_job(int64_t T, int H, int Hkv, int threads) {
  const int group = H / Hkv;
  int n = group;
  for (; n > 1; --n) {
    if (group % n != 0) continue;
    const int64_t jobs = T * (H / n);
    if (jobs % threads == 0 || jobs >= 2 * int64_t(threads)) break;
  }
  return n;
}

// Optional wall time per phase of the forward (g4 bench --profile, every architecture). Read on the
// calling thread at phase boundaries, after every job of the phase has finished, so a phase
// includes its barrier; per-layer phases are summed over the layers.
enum class StepPhase {
  kEmbed,
  kNorms,
  kQkv,
  kRopeKv,
  kAttention,
  kOutProj,
  kGateUp,
  kDown,
  kMoe,
  kPle,
  kHead,
  kCount
};
const char* step_phase_name(StepPhase p);
struct StepProfile {
  double seconds[int(StepPhase::kCount)] = {};
  int64_t steps = 0;
};

// Adds the time since the previous mark to a phase; does nothing without a profile.
class PhaseClock {
 public:
  explicit PhaseClock(StepProfile* p) : p_(p) {
    if (p_ != nullptr) last_ = std::chrono::steady_clock::now();
  }
  void mark(StepPhase ph) {
    if (p_ == nullptr) return;
    const auto t = std::chrono::steady_clock::now();
    p_->seconds[int(ph)] += std::chrono::duration<double>(t - last_).count();
    last_ = t;
  }

 private:
  StepProfile* p_;
  std::chrono::steady_clock::time_point last_;
};

// Advances every sequence's length, then fills `out` with logits for the rows that asked:
// softcap(tok_embd · rmsnorm(x; output_norm)) (softcap 0 = none). x: residual stream [T, d].
void output_head(const StepBatch& batch, KvCache& kv, const float* x, int64_t d,
                 const std::vector<float>& output_norm, float eps, const WeightView& tok_embd,
                 int vocab, float softcap, ExecContext& ctx, StepOutput& out);

}  // namespace g4
