#include "server/scheduler.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "runtime/sequence.h"
#include "tokenizer/tokenizer.h"

namespace g4 {

namespace {
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
size_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}
}  // namespace

// ---- SeqHandle ----

bool SeqHandle::wait(std::vector<SeqEvent>* out, SeqSummary* summary, int timeout_ms) {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait_for(l, std::chrono::milliseconds(timeout_ms), [&] { return done_ || !events_.empty(); });
  for (auto& e : events_) out->push_back(std::move(e));
  events_.clear();
  if (done_ && summary) *summary = summary_;
  return done_;
}

void SeqHandle::push(SeqEvent e) {
  {
    std::lock_guard<std::mutex> l(mu_);
    events_.push_back(std::move(e));
  }
  cv_.notify_all();
}

void SeqHandle::finish(const SeqSummary& s) {
  {
    std::lock_guard<std::mutex> l(mu_);
    summary_ = s;
    done_ = true;
  }
  cv_.notify_all();
}

// ---- Scheduler ----

struct Scheduler::Active {
  std::shared_ptr<SeqHandle> h;
  SeqRequest req;
  int slot = 0;
  // Tokens to prefill: the prompt, or after a preemption everything the sequence had (prompt,
  // tokens generated so far) so that decoding resumes where it stopped.
  std::vector<int32_t> feed;
  size_t fed = 0;      // tokens of feed in the cache
  uint64_t order = 0;  // admission order
  Sequence seq;        // the per-token rules, as Session::generate runs them
  int32_t last = -1;   // sampled token still to be fed
  bool done = false;
  SeqSummary sum;
  double t_submit = 0, t_first = 0;
  Active(const SeqRequest& r, const Tokenizer& tok, int vocab)
      : req(r), seq(tok, vocab, r.gen, r.top_logprobs) {}
};

Scheduler::Scheduler(Engine& engine, const SchedulerOptions& opts, ServerMetrics* metrics)
    : engine_(engine), opts_(opts), metrics_(metrics) {
  opts_.n_slots = std::max(1, opts_.n_slots);
  const auto& eo = engine_.options();
  if (opts_.step_tokens <= 0) opts_.step_tokens = eo.max_chunk;
  opts_.step_tokens = std::clamp<int64_t>(opts_.step_tokens, 1, eo.max_chunk);
  KvCacheOptions ko = engine_.kv_options();
  ko.ring_slack = opts_.ring_slack;
  // Default: every slot can hold a full context (address space; memory follows use).
  ko.pool_tokens = opts_.kv_pool_tokens > 0 ? std::max(opts_.kv_pool_tokens, eo.n_ctx)
                                            : int64_t(opts_.n_slots) * eo.n_ctx;
  kv_ = std::make_unique<KvCache>(engine_.model().kv_geometry(), ko);
  slots_.resize(size_t(opts_.n_slots));
  for (int s = 0; s < opts_.n_slots; ++s) G4_CHECK(kv_->add_sequence(s).ok());
  stats_.n_slots = opts_.n_slots;
  stats_.kv_blocks = kv_->block_stats();
  stats_.kv_block_tokens = kv_->block_tokens();
  stats_.kv_tokens_capacity = stats_.kv_blocks.total * kv_->block_tokens();
  stats_.kv_bytes = kv_->bytes();
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() {
  shutdown(0);
}

int64_t Scheduler::n_ctx() const {
  return kv_->n_ctx();
}

Scheduler::Submitted Scheduler::submit(SeqRequest req) {
  Submitted r;
  if (req.prompt.empty()) {
    r.refusal = Refusal::kInvalid;
    r.message = "empty prompt";
    return r;
  }
  if (int64_t(req.prompt.size()) >= kv_->n_ctx()) {
    r.refusal = Refusal::kInvalid;
    r.message = "prompt of " + std::to_string(req.prompt.size()) +
                " tokens does not fit the context of " + std::to_string(kv_->n_ctx());
    return r;
  }
  if (req.gen.max_tokens < 1) {
    r.refusal = Refusal::kInvalid;
    r.message = "max_tokens must be at least 1";
    return r;
  }
  Status v = req.gen.sampling.validate();
  if (!v.ok()) {
    r.refusal = Refusal::kInvalid;
    r.message = v.message();
    return r;
  }
  std::lock_guard<std::mutex> l(mu_);
  if (!accepting_) {
    r.refusal = Refusal::kShuttingDown;
    r.message = "server is shutting down";
    return r;
  }
  // slots_[].busy belongs to the engine thread; slots_taken_ is its count under mu_.
  const int free_slots = opts_.n_slots - slots_taken_;
  if (int(queue_.size()) >= free_slots + opts_.max_queue) {
    r.refusal = Refusal::kQueueFull;
    r.message = "server is busy: " + std::to_string(queue_.size()) + " requests waiting";
    return r;
  }
  r.handle = std::make_shared<SeqHandle>();
  queue_.push_back(Pending{r.handle, std::move(req), now_s()});
  stats_.waiting = int(queue_.size());
  cv_.notify_all();
  return r;
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard<std::mutex> l(mu_);
  return stats_;
}

void Scheduler::shutdown(double grace_seconds) {
  {
    std::lock_guard<std::mutex> l(mu_);
    accepting_ = false;
  }
  const double deadline = now_s() + grace_seconds;
  while (now_s() < deadline) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (queue_.empty() && stats_.running == 0) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Scheduler::finish(Active& a, const std::string& reason, const std::string& error) {
  if (reason != "cancelled" && reason != "error" && reason != "shutdown") {
    const std::string rest = a.seq.flush();
    if (!rest.empty()) a.h->push(SeqEvent{-1, rest, 0, {}});
  }
  a.sum.finish_reason = reason;
  a.sum.error = error;
  const int n_generated = a.seq.n_generated();
  a.sum.n_generated = n_generated;
  const double t = now_s();
  a.sum.total_seconds = t - a.t_submit;
  if (metrics_ && n_generated > 1) {
    metrics_->tpot.observe((t - a.t_first) / double(n_generated - 1));
  }
  a.done = true;
  slots_[size_t(a.slot)].busy = false;
  slots_[size_t(a.slot)].last_used = ++clock_;
  {
    // The gauge drops before the client hears the end, so /metrics read after a finished
    // response never still counts it (it is recomputed after the step anyway).
    std::lock_guard<std::mutex> l(mu_);
    stats_.running = std::max(0, stats_.running - 1);
    --slots_taken_;
  }
  a.h->finish(a.sum);
}

// Places a request in a free slot, reusing the longest cached prefix it can.
void Scheduler::admit(Pending p) {
  auto a =
      std::make_unique<Active>(p.req, engine_.tokenizer(), engine_.model().config().vocab_size);
  a->h = std::move(p.handle);
  a->t_submit = p.t_submit;
  const std::vector<int32_t>& prompt = a->req.prompt;
  const size_t max_reuse = prompt.size() - 1;  // always compute the last prompt token
  // Target: the free slot whose own history reuses most; ties -> least recently used.
  int target = -1;
  size_t own = 0;
  for (int s = 0; s < int(slots_.size()); ++s) {
    if (slots_[size_t(s)].busy) continue;
    size_t k = std::min(common_prefix(slots_[size_t(s)].history, prompt), max_reuse);
    if (k > 0 && !kv_->can_truncate(s, int64_t(k))) k = 0;
    if (target < 0 || k > own ||
        (k == own && slots_[size_t(s)].last_used < slots_[size_t(target)].last_used)) {
      target = s;
      own = k;
    }
  }
  G4_CHECK(target >= 0);
  // A longer prefix in another slot (running or idle) is copied over.
  int donor = -1;
  size_t best = own;
  for (int s = 0; s < int(slots_.size()); ++s) {
    if (s == target) continue;
    const size_t k = std::min(common_prefix(slots_[size_t(s)].history, prompt), max_reuse);
    if (k > best && kv_->can_copy_prefix(s, int64_t(k))) {
      donor = s;
      best = k;
    }
  }
  Slot& slot = slots_[size_t(target)];
  if (donor >= 0) {
    kv_->copy_prefix(donor, target, int64_t(best));
    slot.history.assign(prompt.begin(), prompt.begin() + long(best));
  } else {
    kv_->set_length(target, int64_t(own));
    slot.history.resize(own);
  }
  slot.busy = true;
  a->slot = target;
  a->feed = prompt;
  a->fed = best;
  a->order = ++admitted_;
  a->sum.n_prompt = int(prompt.size());
  a->sum.n_cached = int(best);
  a->sum.queue_seconds = now_s() - p.t_submit;
  if (metrics_) metrics_->queue_wait.observe(a->sum.queue_seconds);
  a->seq.accept_prompt(prompt);
  {
    std::lock_guard<std::mutex> l(mu_);
    stats_.prompt_tokens += prompt.size();
    stats_.cached_prompt_tokens += best;
  }
  active_.push_back(std::move(a));
}

void Scheduler::emit_token(Active& a, const float* logits) {
  const bool first = a.seq.n_generated() == 0;
  TokenOutcome o = a.seq.next(logits, kv_->length(a.slot), kv_->n_ctx());
  if (first) {
    a.t_first = now_s();
    a.sum.ttft_seconds = a.t_first - a.t_submit;
    if (metrics_) metrics_->ttft.observe(a.sum.ttft_seconds);
  }
  if (o.token >= 0) {
    {
      std::lock_guard<std::mutex> l(mu_);
      ++stats_.generated_tokens;
    }
    a.h->push(SeqEvent{o.token, std::move(o.text), o.logprob, std::move(o.top)});
  }
  if (!o.finish.empty()) {
    finish(a, o.finish);
    return;
  }
  a.last = o.token;
}

bool Scheduler::make_room() {
  // Idle slots' prefix caches go first, least recently used first.
  int idle = -1;
  for (int s = 0; s < int(slots_.size()); ++s) {
    const Slot& sl = slots_[size_t(s)];
    if (sl.busy || kv_->length(s) == 0) continue;
    if (idle < 0 || sl.last_used < slots_[size_t(idle)].last_used) idle = s;
  }
  if (idle >= 0) {
    kv_->set_length(idle, 0);
    slots_[size_t(idle)].history.clear();
    return true;
  }
  // Then the youngest sequence that holds memory.
  Active* victim = nullptr;
  for (auto& a : active_) {
    if (a->done || kv_->length(a->slot) == 0) continue;
    if (victim == nullptr || a->order > victim->order) victim = a.get();
  }
  if (victim == nullptr) return false;
  preempt(*victim);
  return true;
}

void Scheduler::preempt(Active& a) {
  Slot& slot = slots_[size_t(a.slot)];
  std::vector<int32_t> feed = slot.history;
  feed.insert(feed.end(), a.feed.begin() + long(a.fed), a.feed.end());
  if (a.last >= 0) feed.push_back(a.last);
  a.feed = std::move(feed);
  a.fed = 0;
  a.last = -1;
  kv_->set_length(a.slot, 0);
  slot.history.clear();
  std::lock_guard<std::mutex> l(mu_);
  ++stats_.preemptions;
}

void Scheduler::step() {
  // Build the batch: decoders first (one token each), then prompt chunks in arrival order
  // within the remaining budget and the free KV blocks (a chunk that does not fit waits for
  // memory, keeping one block per decoder in reserve). When even that cannot run, memory is
  // made (idle prefix caches, then the youngest sequence) and the batch is built again.
  StepBatch batch;
  std::vector<Active*> who;
  for (;;) {
    batch.seqs.clear();
    who.clear();
    int64_t budget = opts_.step_tokens;
    int64_t need = 0;
    for (auto& a : active_) {
      if (a->last < 0) continue;
      const int64_t at = kv_->length(a->slot);
      batch.seqs.push_back({a->slot, std::span<const int32_t>(&a->last, 1), at, false});
      who.push_back(a.get());
      need += kv_->blocks_needed(a->slot, at + 1);
      --budget;
    }
    const int64_t n_decoders = int64_t(who.size());
    int64_t free = kv_->free_blocks() - need;
    budget = std::max<int64_t>(budget, std::min<int64_t>(opts_.step_tokens, 16));
    for (auto& a : active_) {
      if (a->last >= 0 || budget <= 0) continue;
      const size_t n = std::min<size_t>(a->feed.size() - a->fed, size_t(budget));
      const int64_t nb = kv_->blocks_needed(a->slot, int64_t(a->fed + n));
      // Alone in the step, the oldest prompt goes ahead even if memory must be made for it.
      if (nb > free - n_decoders && !(who.empty() && need == 0)) continue;
      batch.seqs.push_back({a->slot, std::span<const int32_t>(a->feed.data() + a->fed, n),
                            int64_t(a->fed), false, true});
      who.push_back(a.get());
      need += nb;
      free -= nb;
      budget -= int64_t(n);
    }
    if (batch.seqs.empty()) {
      // Prompts are waiting for memory that only idle caches hold.
      if (!active_.empty() && make_room()) continue;
      return;
    }
    if (need <= kv_->free_blocks() || !make_room()) break;
  }
  Status st = engine_.model().forward(batch, *kv_, engine_.exec(), out_);
  {
    std::lock_guard<std::mutex> l(mu_);
    ++stats_.steps;
  }
  if (!st.ok()) {
    for (Active* a : who) {
      kv_->set_length(a->slot, 0);
      slots_[size_t(a->slot)].history.clear();
      finish(*a, "error", st.message());
    }
    return;
  }
  for (size_t r = 0; r < out_.n_rows(); ++r) {
    const size_t i = size_t(out_.row_seq[r]);
    Active& a = *who[i];
    const SeqStep& s = batch.seqs[i];
    Slot& slot = slots_[size_t(a.slot)];
    slot.history.insert(slot.history.end(), s.tokens.begin(), s.tokens.end());
    if (a.last >= 0) {
      a.last = -1;
      emit_token(a, out_.row(r));
    } else {
      a.fed += s.tokens.size();
      if (a.fed == a.feed.size()) emit_token(a, out_.row(r));
    }
  }
}

void Scheduler::loop() {
  for (;;) {
    std::vector<Pending> admitted;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stop_ || !queue_.empty() || !active_.empty(); });
      if (stop_) break;
      int free_slots = opts_.n_slots - slots_taken_;
      // Requests whose client left while waiting are dropped.
      std::erase_if(queue_, [](Pending& p) {
        if (!p.handle->cancelled()) return false;
        SeqSummary s;
        s.finish_reason = "cancelled";
        p.handle->finish(s);
        return true;
      });
      // Slots freed by sequences that finish this iteration are counted next time round.
      while (free_slots > 0 && !queue_.empty()) {
        admitted.push_back(std::move(queue_.front()));
        queue_.pop_front();
        --free_slots;
        ++slots_taken_;
      }
      stats_.waiting = int(queue_.size());
      stats_.running = int(active_.size() + admitted.size());
    }
    for (auto& p : admitted) admit(std::move(p));
    // Cancelled sequences leave before the step (their KV stays reusable).
    for (auto& a : active_) {
      if (a->h->cancelled()) finish(*a, "cancelled");
    }
    std::erase_if(active_, [](const auto& a) { return a->done; });
    step();
    std::erase_if(active_, [](const auto& a) { return a->done; });
    std::lock_guard<std::mutex> l(mu_);
    stats_.running = int(active_.size());
    stats_.waiting = int(queue_.size());
    stats_.kv_tokens_used = 0;
    stats_.kv_tokens_cached = 0;
    for (int s = 0; s < int(slots_.size()); ++s) {
      (slots_[size_t(s)].busy ? stats_.kv_tokens_used : stats_.kv_tokens_cached) += kv_->length(s);
    }
    stats_.kv_blocks = kv_->block_stats();
    stats_.kv_bytes = kv_->bytes();
  }
  // Stopping: whatever is still running or queued is cut short ("shutdown", which the API
  // layer reports to the client as a truncated answer).
  for (auto& a : active_) finish(*a, "shutdown");
  active_.clear();
  std::lock_guard<std::mutex> l(mu_);
  for (auto& p : queue_) {
    SeqSummary s;
    s.finish_reason = "shutdown";
    p.handle->finish(s);
  }
  queue_.clear();
  stats_.running = 0;
  stats_.waiting = 0;
}

}  // namespace g4
