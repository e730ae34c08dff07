#include "server/metrics.h"

#include <cstdio>

#include "server/scheduler.h"

namespace g4 {

namespace {
std::string num(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.9g", v);
  return b;
}
void line(std::string& out, const std::string& name, double v) {
  out += name + " " + num(v) + "\n";
}
void head(std::string& out, const std::string& name, const char* type, const char* help) {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}
}  // namespace

void Histogram::observe(double v) {
  std::lock_guard<std::mutex> l(mu_);
  size_t b = 0;
  while (b < bounds_.size() && v > bounds_[b]) ++b;
  ++counts_[b];
  sum_ += v;
  ++n_;
}

void Histogram::render(std::string& out, const std::string& name) const {
  std::lock_guard<std::mutex> l(mu_);
  uint64_t cum = 0;
  for (size_t b = 0; b < bounds_.size(); ++b) {
    cum += counts_[b];
    out += name + "_bucket{le=\"" + num(bounds_[b]) + "\"} " + std::to_string(cum) + "\n";
  }
  cum += counts_.back();
  out += name + "_bucket{le=\"+Inf\"} " + std::to_string(cum) + "\n";
  line(out, name + "_sum", sum_);
  out += name + "_count " + std::to_string(n_) + "\n";
}

ServerMetrics::ServerMetrics()
    : ttft({0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5, 10, 30}),
      tpot({0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5, 1}),
      queue_wait({0.001, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30}),
      guard_latency({0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10}) {}

void ServerMetrics::count_request(const std::string& endpoint, int status) {
  std::lock_guard<std::mutex> l(mu_);
  ++requests_[{endpoint, status}];
}

std::string ServerMetrics::render(const SchedulerStats& s) const {
  std::string out;
  head(out, "g4_requests_total", "counter", "HTTP requests by endpoint and status code.");
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& [k, n] : requests_) {
      out += "g4_requests_total{endpoint=\"" + k.first + "\",status=\"" + std::to_string(k.second) +
             "\"} " + std::to_string(n) + "\n";
    }
    head(out, "g4_client_disconnects_total", "counter",
         "Streams whose client went away before the end (sequence cancelled).");
    line(out, "g4_client_disconnects_total", double(disconnects_));
  }
  head(out, "g4_prompt_tokens_total", "counter", "Prompt tokens of admitted requests.");
  line(out, "g4_prompt_tokens_total", double(s.prompt_tokens));
  head(out, "g4_prompt_tokens_cached_total", "counter",
       "Prompt tokens reused from the prefix cache instead of computed.");
  line(out, "g4_prompt_tokens_cached_total", double(s.cached_prompt_tokens));
  head(out, "g4_generated_tokens_total", "counter", "Tokens generated.");
  line(out, "g4_generated_tokens_total", double(s.generated_tokens));
  head(out, "g4_prefix_cache_hit_ratio", "gauge",
       "Fraction of prompt tokens served from the prefix cache since start.");
  line(out, "g4_prefix_cache_hit_ratio",
       s.prompt_tokens ? double(s.cached_prompt_tokens) / double(s.prompt_tokens) : 0.0);
  head(out, "g4_engine_steps_total", "counter", "Batched forward steps run.");
  line(out, "g4_engine_steps_total", double(s.steps));
  head(out, "g4_sequences_running", "gauge", "Sequences in a slot (prefilling or decoding).");
  line(out, "g4_sequences_running", s.running);
  head(out, "g4_sequences_waiting", "gauge", "Requests queued for a free slot.");
  line(out, "g4_sequences_waiting", s.waiting);
  head(out, "g4_slots_total", "gauge", "Sequence slots (--parallel).");
  line(out, "g4_slots_total", s.n_slots);
  // The paged KV pool of the global layers (sliding layers' rings are per slot, in bytes).
  head(out, "g4_kv_cache_block_tokens", "gauge", "Positions per KV block.");
  line(out, "g4_kv_cache_block_tokens", double(s.kv_block_tokens));
  head(out, "g4_kv_cache_blocks_total", "gauge", "KV blocks in the pool.");
  line(out, "g4_kv_cache_blocks_total", double(s.kv_blocks.total));
  head(out, "g4_kv_cache_blocks_used", "gauge",
       "KV blocks held by sequences (running, or idle slots kept for prefix reuse).");
  line(out, "g4_kv_cache_blocks_used", double(s.kv_blocks.used));
  head(out, "g4_kv_cache_blocks_shared", "gauge",
       "KV blocks held by more than one sequence (shared prefixes, copy on write).");
  line(out, "g4_kv_cache_blocks_shared", double(s.kv_blocks.shared));
  head(out, "g4_kv_cache_blocks_free", "gauge", "KV blocks free.");
  line(out, "g4_kv_cache_blocks_free", double(s.kv_blocks.free));
  head(out, "g4_kv_cache_tokens", "gauge", "Positions held, by running and idle (cached) slots.");
  out += "g4_kv_cache_tokens{state=\"running\"} " + std::to_string(s.kv_tokens_used) + "\n";
  out += "g4_kv_cache_tokens{state=\"cached\"} " + std::to_string(s.kv_tokens_cached) + "\n";
  head(out, "g4_kv_cache_bytes", "gauge",
       "Bytes of K/V held: sliding rings plus global blocks in use (each shared block once).");
  line(out, "g4_kv_cache_bytes", double(s.kv_bytes));
  head(out, "g4_kv_preemptions_total", "counter",
       "Sequences preempted when KV memory ran out (recomputed, nothing lost).");
  line(out, "g4_kv_preemptions_total", double(s.preemptions));
  head(out, "g4_time_to_first_token_seconds", "histogram", "Submit to first generated token.");
  ttft.render(out, "g4_time_to_first_token_seconds");
  head(out, "g4_time_per_output_token_seconds", "histogram",
       "Mean time between output tokens of a request (after the first).");
  tpot.render(out, "g4_time_per_output_token_seconds");
  head(out, "g4_queue_wait_seconds", "histogram", "Submit to admission into a slot.");
  queue_wait.render(out, "g4_queue_wait_seconds");
  // Safety guard (src/guard).
  head(out, "g4_guard_check_seconds", "histogram",
       "Safety guard checks: all policies, all windows.");
  guard_latency.render(out, "g4_guard_check_seconds");
  head(out, "g4_guard_blocks_total", "counter", "Chat requests refused by the guard, by policy.");
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& [p, n] : guard_blocks_)
      out += "g4_guard_blocks_total{policy=\"" + p + "\"} " + std::to_string(n) + "\n";
    head(out, "g4_guard_output_checks_total", "counter",
         "Checks of generated text (mid-answer and final).");
    line(out, "g4_guard_output_checks_total", double(guard_output_checks_));
    head(out, "g4_guard_output_stops_total", "counter",
         "Answers stopped by an output check (finish reason content_filter), by policy.");
    for (const auto& [p, n] : guard_output_stops_)
      out += "g4_guard_output_stops_total{policy=\"" + p + "\"} " + std::to_string(n) + "\n";
    head(out, "g4_guard_tool_results_total", "counter",
         "Tool results screened for prompt injection, by outcome.");
    out += "g4_guard_tool_results_total{outcome=\"clean\"} " +
           std::to_string(guard_tool_results_[0]) + "\n";
    out += "g4_guard_tool_results_total{outcome=\"flagged\"} " +
           std::to_string(guard_tool_results_[1]) + "\n";
    head(out, "g4_guard_tool_findings_total", "counter",
         "Injection findings in tool results, by kind.");
    for (const auto& [k, n] : guard_tool_findings_)
      out += "g4_guard_tool_findings_total{kind=\"" + k + "\"} " + std::to_string(n) + "\n";
  }
  return out;
}

}  // namespace g4
