// Continuous batching: one engine thread steps every active sequence together.
//
// Each step is one forward over a ragged StepBatch: every decoding sequence feeds its last
// sampled token, and sequences still reading their prompt feed a chunk of it, within a
// per-step token budget so long prompts interleave with other users' decoding. Requests
// join and leave between steps. Sequences live in slots of one KvCache; a finished slot
// keeps its tokens, and a new request reuses the longest prefix it shares with any slot
// (same slot: cut back; other slot: copy), sliding-window layers included while their
// ring still holds the window before the shared prefix (ref: docs/ARCHITECTURE.md).
//
// Thread-safety: submit/stats/n_ctx/shutdown may be called from any thread. A SeqHandle is
// shared between the engine thread (producer) and one client thread (consumer). Slots, the
// KV cache and active sequences belong to the engine thread; what client threads read
// (queue, slot occupancy, stats) is guarded by mu_.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "g4/engine.h"
#include "runtime/kv_blocks.h"
#include "runtime/sequence.h"
#include "server/metrics.h"

namespace g4 {

struct SeqRequest {
  std::vector<int32_t> prompt;
  GenerateOptions gen;
  int top_logprobs = -1;  // -1: no logprobs; 0: chosen token only; k > 0: also the top k
};

// What one step produced for a sequence.
struct SeqEvent {
  int32_t token = -1;  // -1 for the final flush event
  std::string text;    // text that became final (may be empty: held back for stop strings)
  float logprob = 0;
  std::vector<TokenLogprob> top;
};

struct SeqSummary {
  // stop | length | cancelled (by the client) | shutdown (cut short: the server is stopping)
  // | error
  std::string finish_reason;
  std::string error;
  int n_prompt = 0;
  int n_cached = 0;  // prompt tokens reused from the prefix cache
  int n_generated = 0;
  double queue_seconds = 0;
  double ttft_seconds = 0;  // submit -> first token
  double total_seconds = 0;
};

class SeqHandle {
 public:
  // Waits up to timeout_ms for events; moves them into *out. Returns true once finished
  // (after the last events were delivered), then *summary is valid.
  bool wait(std::vector<SeqEvent>* out, SeqSummary* summary, int timeout_ms);
  // Client went away or gave up: the engine frees the sequence at its next step.
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

 private:
  friend class Scheduler;
  void push(SeqEvent e);
  void finish(const SeqSummary& s);

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<SeqEvent> events_;
  bool done_ = false;
  SeqSummary summary_;
  std::atomic<bool> cancelled_{false};
};

struct SchedulerOptions {
  int n_slots = 4;          // sequences decoded together
  int max_queue = 64;       // waiting requests beyond the slots; more are refused
  int64_t step_tokens = 0;  // token budget per step (0 = the engine's max_chunk)
  int64_t ring_slack = 0;   // extra sliding-window ring slots (prefix reuse reach)
  // Global-layer KV positions shared by all slots (0 = n_slots * n_ctx, never short). Less
  // lets more slots share memory: admission waits for free blocks, and a step that runs out
  // preempts the youngest sequence (recomputed later), never failing the others.
  int64_t kv_pool_tokens = 0;
};

struct SchedulerStats {
  int running = 0;
  int waiting = 0;
  int n_slots = 0;
  int64_t kv_tokens_used = 0;      // positions held by running sequences
  int64_t kv_tokens_cached = 0;    // positions kept by idle slots for prefix reuse
  int64_t kv_tokens_capacity = 0;  // positions the global-layer pool holds
  size_t kv_bytes = 0;             // K/V bytes held (rings + global blocks in use)
  KvBlockStats kv_blocks;          // the paged pool
  int kv_block_tokens = 0;
  uint64_t preemptions = 0;  // sequences evicted for memory and recomputed
  uint64_t prompt_tokens = 0;
  uint64_t cached_prompt_tokens = 0;
  uint64_t generated_tokens = 0;
  uint64_t steps = 0;
};

class Scheduler {
 public:
  Scheduler(Engine& engine, const SchedulerOptions& opts, ServerMetrics* metrics = nullptr);
  ~Scheduler();

  enum class Refusal { kNone, kQueueFull, kShuttingDown, kInvalid };
  struct Submitted {
    std::shared_ptr<SeqHandle> handle;
    Refusal refusal = Refusal::kNone;
    std::string message;
  };
  Submitted submit(SeqRequest req);

  SchedulerStats stats() const;
  int64_t n_ctx() const;
  // Stops admitting, lets running and queued work finish for up to grace_seconds, then
  // cancels the rest and stops the engine thread.
  void shutdown(double grace_seconds);

 private:
  struct Slot {                    // engine thread only
    std::vector<int32_t> history;  // tokens whose K/V the slot holds
    bool busy = false;
    uint64_t last_used = 0;
  };
  struct Active;
  struct Pending {
    std::shared_ptr<SeqHandle> handle;
    SeqRequest req;
    double t_submit = 0;
  };

  void loop();
  void admit(Pending p);
  void step();
  // Frees KV blocks when a step needs more than are free: idle slots' prefix
  // caches first (least recently used), then the youngest running sequence, which starts
  // over from its tokens so far. False when nothing could be freed.
  bool make_room();
  void preempt(Active& a);
  void finish(Active& a, const std::string& reason, const std::string& error = "");
  void emit_token(Active& a, const float* logits);

  Engine& engine_;
  SchedulerOptions opts_;
  ServerMetrics* metrics_;
  std::unique_ptr<KvCache> kv_;
  std::vector<Slot> slots_;                      // engine thread only
  std::vector<std::unique_ptr<Active>> active_;  // engine thread only
  StepOutput out_;
  uint64_t clock_ = 0;
  uint64_t admitted_ = 0;  // admission order (the youngest is preempted first)

  // Guards queue_, slots_taken_, accepting_, stop_ and stats_ (shared with client threads).
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_;
  int slots_taken_ = 0;  // requests taken off the queue for a slot and not finished yet
  bool accepting_ = true;
  bool stop_ = false;
  SchedulerStats stats_;
  std::thread thread_;
};

}  // namespace g4
