#include "g4/engine.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <thread>

#include "constrain/grammar.h"
#include "io/gguf.h"
#include "io/hf_checkpoint.h"
#include "io/hf_tokenizer.h"
#include "runtime/sequence.h"
#include "runtime/text_stream.h"

namespace g4 {

namespace {
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
bool contains_ci(std::string s, const std::string& needle) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return char(std::tolower(c)); });
  return s.find(needle) != std::string::npos;
}
}  // namespace

Engine::~Engine() = default;

Result<std::unique_ptr<Engine>> Engine::load(const EngineOptions& opts) {
  std::unique_ptr<Engine> e(new Engine());
  e->opts_ = opts;
  const bool hf_dir = is_hf_checkpoint_dir(opts.model_path);
  auto f = hf_dir ? load_hf_checkpoint(opts.model_path, HfLoadOptions{opts.hf_dtype})
                  : GgufFile::open(opts.model_path);
  if (!f.ok()) return f.status();
  e->file_ = std::move(f).value();
  auto arch = e->file_->get_string("general.architecture");
  if (!arch.ok()) return arch.status();
  if (!arch.value()) return Status::error(opts.model_path + ": no general.architecture");
  if (*arch.value() != "gemma2" && *arch.value() != "gemma3" && *arch.value() != "gemma4") {
    return Status::error(opts.model_path + ": architecture '" + *arch.value() +
                         "' is not supported yet (supported: gemma2, gemma3, gemma4)");
  }
  // gemma2 runs through the Gemma 3 forward (config flags, src/model/config.cc).
  auto m = *arch.value() == "gemma4" ? load_gemma4(*e->file_, ModelOptions{opts.embed_scale})
                                     : load_gemma3(*e->file_, ModelOptions{opts.embed_scale});
  if (!m.ok()) return Status::error(opts.model_path + ": " + m.error());
  e->model_ = std::move(m).value();
  const std::string tok_json = opts.model_path + "/tokenizer.json";
  if (hf_dir && !std::filesystem::exists(tok_json)) {
    // No tokenizer.json: token-id use only (Session::logits_all etc.); the tokenizer is empty.
  } else {
    auto t = hf_dir ? Tokenizer::from_hf_json_file(tok_json) : Tokenizer::from_gguf(*e->file_);
    if (!t.ok()) return Status::error((hf_dir ? tok_json : opts.model_path) + ": " + t.error());
    e->tok_ = std::move(t).value();
  }
  if (e->tok_.size() > e->model_->config().vocab_size) {
    return Status::error(opts.model_path +
                         ": tokenizer has more tokens than the embedding has rows");
  }
  const bool has_template = e->file_->find("tokenizer.chat_template") != nullptr;
  if (hf_dir) {
    auto ct = read_hf_chat_template(opts.model_path);
    if (!ct.ok()) return ct.status();
    e->chat_template_ = std::move(ct.value());
  } else if (auto ct = e->file_->get_string("tokenizer.chat_template"); ct.ok() && ct.value()) {
    e->chat_template_ = *ct.value();
  }
  const std::string name = e->model_->config().name;
  e->instruction_tuned_ = has_template || contains_ci(name, "-it") || contains_ci(name, " it") ||
                          contains_ci(name, "instruct");
  e->opts_.n_ctx = std::max<int64_t>(16, std::min(opts.n_ctx, e->model_->config().n_ctx_train));
  KvCacheType kv_type;
  if (!parse_kv_cache_type(opts.kv_f32 ? "f32" : opts.kv_type, &kv_type))
    return Status::error("unknown KV type '" + opts.kv_type + "' (f16, f32, bf16, q8_0 or q4_0)");
  if (KvCache::is_blocked(kv_type)) {
    for (const KvLayerGeometry& g : e->model_->kv_geometry()) {
      if (g.head_dim % 32 != 0)
        return Status::error(std::string(kv_cache_type_name(kv_type)) +
                             " KV needs head sizes that are multiples of 32; this model has " +
                             std::to_string(g.head_dim));
    }
  }
  if (opts.sparse.enabled && *budget_error(opts.sparse) != '\0')
    return Status::error(budget_error(opts.sparse));
  e->opts_.max_chunk = std::clamp<int64_t>(opts.max_chunk, 1, e->opts_.n_ctx);
  int threads = opts.n_threads > 0 ? opts.n_threads : int(std::thread::hardware_concurrency());
  e->exec_ = std::make_unique<ExecContext>(std::max(1, threads));
  e->exec_->exact = opts.exact;
  e->constraints_ = std::make_unique<ConstraintCompiler>(e->tok_, e->model_->config().vocab_size);
  // Loading read the metadata and the tensors that were packed or copied; hand the mapped pages
  // back (whatever is still read from the file re-faults on demand), so RSS is the arena, the KV
  // cache and scratch.
  e->file_->release_all();
  return e;
}

KvCacheOptions Engine::kv_options() const {
  KvCacheOptions ko;
  ko.n_ctx = opts_.n_ctx;
  ko.max_chunk = opts_.max_chunk;
  ko.f32 = opts_.kv_f32;
  parse_kv_cache_type(opts_.kv_type, &ko.type);  // validated by load()
  ko.sparse = opts_.sparse;
  return ko;
}

Session::Session(Engine& engine, int seq_id) : engine_(engine), seq_(seq_id) {
  kv_ = std::make_unique<KvCache>(engine_.model().kv_geometry(), engine_.kv_options());
  G4_CHECK(kv_->add_sequence(seq_).ok());
}

Session::~Session() = default;

Status Session::set_routing(const SparseAttentionOptions& o) {
  return kv_->set_routing(seq_, o);
}

void Session::reset() {
  kv_->set_length(seq_, 0);
  history_.clear();
}

Status Session::sync(const std::vector<int32_t>& ids, bool all_logits, std::vector<float>* all,
                     int* n_cached) {
  if (ids.empty()) return Status::error("empty prompt");
  if (int64_t(ids.size()) > kv_->n_ctx()) {
    return Status::error("prompt of " + std::to_string(ids.size()) +
                         " tokens exceeds the context size " + std::to_string(kv_->n_ctx()));
  }
  // Longest common prefix with what is cached; keep at least one token to compute so the
  // caller gets fresh logits.
  size_t keep = 0;
  while (keep < history_.size() && keep < ids.size() && history_[keep] == ids[keep]) ++keep;
  if (keep == ids.size()) --keep;
  if (all_logits) keep = 0;
  if (keep < history_.size() && !kv_->can_truncate(seq_, int64_t(keep))) keep = 0;
  kv_->set_length(seq_, int64_t(keep));
  history_.resize(keep);
  if (n_cached) *n_cached = int(keep);
  const int vocab = engine_.model().config().vocab_size;
  if (all) all->clear();
  for (size_t b = keep; b < ids.size(); b += size_t(kv_->max_chunk())) {
    const size_t e = std::min(ids.size(), b + size_t(kv_->max_chunk()));
    StepBatch batch;
    batch.seqs.push_back(
        {seq_, std::span<const int32_t>(ids.data() + b, e - b), int64_t(b), all_logits, true});
    Status s = engine_.model().forward(batch, *kv_, engine_.exec(), out_);
    if (!s.ok()) {
      reset();
      return s;
    }
    history_.insert(history_.end(), ids.begin() + long(b), ids.begin() + long(e));
    if (all)
      all->insert(all->end(), out_.logits.begin(),
                  out_.logits.begin() + long(out_.n_rows()) * vocab);
  }
  return Status();
}

Result<std::vector<float>> Session::logits_all(const std::vector<int32_t>& ids) {
  std::vector<float> all;
  Status s = sync(ids, true, &all, nullptr);
  if (!s.ok()) return s;
  return all;
}

Result<GenerateResult> Session::generate(const std::vector<int32_t>& ids,
                                         const GenerateOptions& opts,
                                         const std::function<bool(std::string_view)>& on_piece) {
  Status v = opts.sampling.validate();
  if (!v.ok()) return v;
  GenerateResult r;
  const double t0 = now_s();
  Status s = sync(ids, false, nullptr, &r.n_cached_tokens);
  if (!s.ok()) return s;
  r.n_prompt_tokens = int(ids.size()) - r.n_cached_tokens;
  const double t1 = now_s();
  r.prefill_seconds = t1 - t0;
  // The per-token rules are the server's too (runtime/sequence.h).
  Sequence seq(engine_.tokenizer(), engine_.model().config().vocab_size, opts);
  seq.accept_prompt(ids);
  r.finish_reason = "length";
  for (int i = 0; opts.max_tokens > 0; ++i) {
    const TokenOutcome o = seq.next(out_.row(out_.n_rows() - 1), kv_->length(seq_), kv_->n_ctx());
    if (i == 0) r.ttft_seconds = now_s() - t0;
    if (on_piece && !o.text.empty() && !on_piece(o.text)) {
      r.finish_reason = "cancelled";
      break;
    }
    if (!o.finish.empty()) {
      r.finish_reason = o.finish;
      break;
    }
    StepBatch batch;
    batch.seqs.push_back({seq_, std::span<const int32_t>(&o.token, 1), kv_->length(seq_), false});
    Status fs = engine_.model().forward(batch, *kv_, engine_.exec(), out_);
    if (!fs.ok()) return fs;
    history_.push_back(o.token);
  }
  if (r.finish_reason != "cancelled") {
    const std::string rest = seq.flush();
    if (on_piece && !rest.empty()) on_piece(rest);
  }
  r.tokens = seq.tokens();
  r.text = seq.text();
  r.decode_seconds = now_s() - t1;
  return r;
}

}  // namespace g4
