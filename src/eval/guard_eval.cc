#include "eval/guard_eval.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>

#include "guard/policies.h"

namespace g4 {

Result<GuardEvalItem> parse_guard_eval_line(std::string_view line) {
  using nlohmann::json;
  json j;
  try {
    j = json::parse(line.begin(), line.end());
  } catch (const std::exception& e) {
    return Status::error(std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object()) return Status::error("expected a JSON object");
  GuardEvalItem it;
  for (auto kv = j.begin(); kv != j.end(); ++kv) {
    const std::string& k = kv.key();
    if (k == "text") {
      if (!kv->is_string() || kv->get<std::string>().empty())
        return Status::error("'text' must be a non-empty string");
      it.text = kv->get<std::string>();
    } else if (k == "response") {
      if (!kv->is_string() && !kv->is_null()) return Status::error("'response' must be a string");
      if (kv->is_string()) it.response = kv->get<std::string>();
    } else if (k == "labels") {
      if (!kv->is_object() || kv->empty())
        return Status::error("'labels' must be a non-empty object of policy: 0|1");
      for (auto l = kv->begin(); l != kv->end(); ++l) {
        Status s = check_policy_name(l.key());
        if (!s.ok()) return Status::error("labels: " + s.message());
        int v = -1;
        if (l->is_boolean()) {
          v = l->get<bool>() ? 1 : 0;
        } else if (l->is_number_integer() || l->is_number_unsigned()) {
          const int64_t x = l->get<int64_t>();
          if (x == 0 || x == 1) v = int(x);
        }
        if (v < 0) return Status::error("labels." + l.key() + " must be 0, 1, false or true");
        it.labels[l.key()] = v;
      }
    } else {
      return Status::error("unknown key '" + k + "' (text, response, labels)");
    }
  }
  if (it.text.empty()) return Status::error("missing 'text'");
  if (it.labels.empty()) return Status::error("missing 'labels'");
  return it;
}

Result<std::vector<GuardEvalItem>> load_guard_eval_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::error("cannot read '" + path + "'");
  std::vector<GuardEvalItem> out;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    Result<GuardEvalItem> r = parse_guard_eval_line(line);
    if (!r.ok()) return Status::error(path + ":" + std::to_string(n) + ": " + r.error());
    r.value().line = n;
    out.push_back(std::move(r.value()));
  }
  if (out.empty()) return Status::error(path + ": no labelled items");
  return out;
}

namespace {

BinaryMetrics finish(BinaryMetrics m) {
  const size_t flagged = m.tp + m.fp;
  m.precision = flagged ? double(m.tp) / double(flagged) : 0.0;
  m.recall = m.positives ? double(m.tp) / double(m.positives) : 0.0;
  m.f1 = m.precision + m.recall > 0 ? 2 * m.precision * m.recall / (m.precision + m.recall) : 0.0;
  m.fpr = m.negatives ? double(m.fp) / double(m.negatives) : 0.0;
  return m;
}

// Indices by score, highest first.
std::vector<size_t> by_score_desc(const std::vector<float>& scores) {
  std::vector<size_t> o(scores.size());
  std::iota(o.begin(), o.end(), size_t(0));
  std::stable_sort(o.begin(), o.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  return o;
}

}  // namespace

BinaryMetrics metrics_at(const std::vector<float>& scores, const std::vector<int>& labels,
                         float threshold) {
  BinaryMetrics m;
  for (size_t i = 0; i < scores.size(); ++i) {
    const bool pos = labels[i] != 0, flag = scores[i] >= threshold;
    (pos ? m.positives : m.negatives) += 1;
    if (flag) (pos ? m.tp : m.fp) += 1;
  }
  return finish(m);
}

double average_precision(const std::vector<float>& scores, const std::vector<int>& labels) {
  size_t P = 0;
  for (int l : labels) P += l != 0;
  if (P == 0) return std::numeric_limits<double>::quiet_NaN();
  const std::vector<size_t> o = by_score_desc(scores);
  double ap = 0, prev_recall = 0;
  size_t tp = 0, fp = 0;
  for (size_t k = 0; k < o.size();) {
    const float s = scores[o[k]];
    for (; k < o.size() && scores[o[k]] == s; ++k) (labels[o[k]] ? tp : fp) += 1;  // ties: one step
    const double recall = double(tp) / double(P), precision = double(tp) / double(tp + fp);
    ap += (recall - prev_recall) * precision;
    prev_recall = recall;
  }
  return ap;
}

FprThreshold threshold_for_fpr(const std::vector<float>& scores, const std::vector<int>& labels,
                               double target_fpr) {
  size_t N = 0;
  for (int l : labels) N += l == 0;
  FprThreshold r;
  const std::vector<size_t> o = by_score_desc(scores);
  size_t fp = 0;
  bool any = false;
  for (size_t k = 0; k < o.size();) {
    const float s = scores[o[k]];
    for (; k < o.size() && scores[o[k]] == s; ++k) fp += labels[o[k]] == 0;
    if (N > 0 && double(fp) / double(N) > target_fpr) break;  // FPR only grows as t falls
    r.threshold = s;
    any = true;
  }
  if (!any) {
    r.threshold = 1.0f;
    r.reachable = false;
  }
  r.at = metrics_at(scores, labels, r.threshold);
  return r;
}

}  // namespace g4
