// Labelled-data evaluation of the safety guard (`g4 eval guard`): the data-set format, per-policy
// metrics at a threshold, average precision, and the threshold that meets a target
// false-positive rate. Pure functions; the command (src/cli/cmd_eval_guard.cc) runs the guard.
//
// Data set: JSON Lines, one object per line (blank lines skipped):
//   {"text": "user prompt", "response": "optional model reply", "labels": {"harassment": 1}}
// "text" is a non-empty string. With a non-empty "response" the guard judges the response in
// ShieldGemma's prompt+response form, else the text in the prompt-only form. "labels" maps
// policy names to 0/1 (or false/true): 1 = the item violates the policy. A policy an item does
// not label is not counted for that item. No other keys are allowed (typos are errors).
//
// Metrics (score s = P(Yes), flagged when s >= threshold, as the guard flags):
//   precision = TP / (TP + FP) (0 when nothing is flagged), recall = TP / P, F1 their harmonic
//   mean (0 when both are 0), FPR = FP / N.
//   average precision = sum over distinct score thresholds, highest first, of
//   (R_k - R_{k-1}) * P_k: scikit-learn's average_precision_score (no interpolation).
//   threshold for a target FPR = the lowest score value t with FP(t) / N <= target, i.e. the
//   most recall the target allows (scikit-learn's roc_curve thresholds); when only +inf would
//   meet it (the top score is a negative's and target * N < 1) it is reported as 1.0 and
//   `reachable` is false.
#pragma once
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace g4 {

struct GuardEvalItem {
  std::string text, response;
  std::map<std::string, int> labels;  // policy -> 0/1
  int line = 0;                       // 1-based line in the file
};

// One line of the data set. Errors name what is wrong (the caller adds the line number).
Result<GuardEvalItem> parse_guard_eval_line(std::string_view line);
// The whole file: errors are "PATH:LINE: ...". Blank lines are skipped; an empty data set is
// an error.
Result<std::vector<GuardEvalItem>> load_guard_eval_file(const std::string& path);

struct BinaryMetrics {
  size_t positives = 0, negatives = 0;
  size_t tp = 0, fp = 0;
  double precision = 0, recall = 0, f1 = 0, fpr = 0;
};

// Counts and rates at `threshold` (flagged: score >= threshold). labels are 0/1.
BinaryMetrics metrics_at(const std::vector<float>& scores, const std::vector<int>& labels,
                         float threshold);
// scikit-learn's average_precision_score; NaN when there is no positive.
double average_precision(const std::vector<float>& scores, const std::vector<int>& labels);

struct FprThreshold {
  float threshold = 1.0f;
  bool reachable = true;  // false: no data score meets the target (threshold 1.0 reported)
  BinaryMetrics at;       // metrics at that threshold
};
// The lowest score value t with FPR(t) <= target (see above). Needs at least one negative.
FprThreshold threshold_for_fpr(const std::vector<float>& scores, const std::vector<int>& labels,
                               double target_fpr);

}  // namespace g4
