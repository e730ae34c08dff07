// Prometheus metrics of the server (text exposition format 0.0.4).
// Thread-safe: every method may be called from any thread.
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace g4 {

struct SchedulerStats;

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds)
      : bounds_(std::move(bounds)), counts_(bounds_.size() + 1) {}
  void observe(double v);
  // Appends the _bucket/_sum/_count lines of `name`.
  void render(std::string& out, const std::string& name) const;

 private:
  mutable std::mutex mu_;
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative); last = +Inf
  double sum_ = 0;
  uint64_t n_ = 0;
};

class ServerMetrics {
 public:
  ServerMetrics();
  void count_request(const std::string& endpoint, int status);
  void disconnected() {
    std::lock_guard<std::mutex> l(mu_);
    ++disconnects_;
  }
  Histogram ttft;        // seconds, submit -> first token
  Histogram tpot;        // seconds per output token after the first
  Histogram queue_wait;  // seconds from submit to admission into a slot
  // Safety guard: seconds per check, and chat requests blocked per policy.
  Histogram guard_latency;
  void guard_block(const std::string& policy) {
    std::lock_guard<std::mutex> l(mu_);
    ++guard_blocks_[policy];
  }
  // Output checks run, answers stopped per policy ("guard_error": failed closed), and tool
  // results with injection findings per kind.
  void guard_output_check() {
    std::lock_guard<std::mutex> l(mu_);
    ++guard_output_checks_;
  }
  void guard_output_stop(const std::string& policy) {
    std::lock_guard<std::mutex> l(mu_);
    ++guard_output_stops_[policy];
  }
  void guard_tool_finding(const std::string& kind) {
    std::lock_guard<std::mutex> l(mu_);
    ++guard_tool_findings_[kind];
  }
  void guard_tool_result(bool flagged) {
    std::lock_guard<std::mutex> l(mu_);
    ++guard_tool_results_[flagged ? 1 : 0];
  }
  std::string render(const SchedulerStats& s) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  uint64_t disconnects_ = 0;
  std::map<std::string, uint64_t> guard_blocks_;
  uint64_t guard_output_checks_ = 0;
  std::map<std::string, uint64_t> guard_output_stops_;
  std::map<std::string, uint64_t> guard_tool_findings_;
  uint64_t guard_tool_results_[2] = {0, 0};  // screened tool results: clean, flagged
};

}  // namespace g4
