// Paired comparison of two engine variants on the same evaluation cases (`g4 eval niah|ruler
// --compare A:B`): a variant is a list of engine settings, and the per-case scores of the two
// runs are compared with an exact sign test.
//
// A variant spec is "default" or comma-separated key=value settings, e.g. "kv=f32" or
// "kv=f16,exact=on". The known keys live in one table in compare.cc; a new engine switch
// (sparse attention, KV types q8_0/q4_0) is one line there.
#pragma once
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace g4 {

struct EngineOptions;

struct EngineVariant {
  std::string spec;                                           // as given, for reports
  std::vector<std::pair<std::string, std::string>> settings;  // validated key=value, in order
};

Result<EngineVariant> parse_variant(std::string_view spec);
// "A:B" -> two variants.
Result<std::pair<EngineVariant, EngineVariant>> parse_compare(std::string_view spec);
// Applies the settings in order on top of `base`.
Status apply_variant(const EngineVariant& v, EngineOptions* base);
// "kv=f16|f32, exact=off|on" (for help texts and errors).
std::string variant_keys_help();

// Exact two-sided binomial test of k successes in n trials at p = 1/2:
// min(1, 2 * P(X <= min(k, n - k))), equal to scipy.stats.binomtest(k, n, 0.5).pvalue.
// n = 0 gives 1.
double binomial_two_sided_p(int k, int n);

// Sign test on paired scores: cases where a > b against cases where b > a, ties dropped.
// With 0/1 scores (correct or not) this is the exact McNemar test.
struct SignTest {
  int a_better = 0;
  int b_better = 0;
  int ties = 0;
  double p = 1;
};
SignTest sign_test(std::span<const double> a, std::span<const double> b);

}  // namespace g4
