#include "eval/compare.h"

#include <algorithm>
#include <cmath>

#include "g4/engine.h"

namespace g4 {

namespace {

using Setter = Status (*)(std::string_view value, EngineOptions* o);

// A non-negative decimal count (at most 2^40).
bool parse_count(std::string_view v, int64_t* n) {
  *n = 0;
  for (char c : v) {
    if (c < '0' || c > '9' || *n > (int64_t(1) << 40)) return false;
    *n = *n * 10 + (c - '0');
  }
  return !v.empty();
}

struct VariantKey {
  const char* key;
  const char* values;  // for help and errors
  Setter set;
};

// One line per engine switch a comparison can flip.
const VariantKey kVariantKeys[] = {
    {"kv", "f16|f32|bf16|q8_0|q4_0",
     [](std::string_view v, EngineOptions* o) {
       if (v != "f16" && v != "f32" && v != "bf16" && v != "q8_0" && v != "q4_0")
         return Status::error("");
       o->kv_f32 = v == "f32";
       o->kv_type = std::string(v);
       return Status();
     }},
    {"exact", "off|on",
     [](std::string_view v, EngineOptions* o) {
       if (v != "off" && v != "on") return Status::error("");
       o->exact = v == "on";
       return Status();
     }},
    {"attn", "dense|sparse",
     [](std::string_view v, EngineOptions* o) {
       if (v != "dense" && v != "sparse") return Status::error("");
       o->sparse.enabled = v == "sparse";
       return Status();
     }},
    {"budget", "TOKENS or P% (sparse routing's keys per query: a count or a share)",
     [](std::string_view v, EngineOptions* o) {
       if (!parse_sparse_budget(v, &o->sparse, 1)) return Status::error("");
       return Status();
     }},
    {"min_ctx", "TOKENS (sparse routing starts at this position)",
     [](std::string_view v, EngineOptions* o) {
       int64_t n = 0;
       if (!parse_count(v, &n)) return Status::error("");
       o->sparse.min_context = n;
       return Status();
     }},
    {"page", "8|16|32|64|128|256 (sparse routing's positions per page)",
     [](std::string_view v, EngineOptions* o) {
       int64_t n = 0;
       if (!parse_count(v, &n) || n < 8 || n > 256 || (n & (n - 1)) != 0) return Status::error("");
       o->sparse.page_tokens = int(n);
       return Status();
     }},
    {"recent", "PAGES (sparse routing keeps these before the query's own)",
     [](std::string_view v, EngineOptions* o) {
       int64_t n = 0;
       if (!parse_count(v, &n) || n > 4096) return Status::error("");
       o->sparse.recent_pages = int(n);
       return Status();
     }},
    {"sparse_prefill", "off|on (route prompt tokens too)",
     [](std::string_view v, EngineOptions* o) {
       if (v != "off" && v != "on") return Status::error("");
       o->sparse.prefill = v == "on";
       return Status();
     }},
};

const VariantKey* find_key(std::string_view k) {
  for (const VariantKey& vk : kVariantKeys)
    if (k == vk.key) return &vk;
  return nullptr;
}

}  // namespace

std::string variant_keys_help() {
  std::string s;
  for (const VariantKey& vk : kVariantKeys) {
    if (!s.empty()) s += ", ";
    s += std::string(vk.key) + "=" + vk.values;
  }
  return s;
}

Result<EngineVariant> parse_variant(std::string_view spec) {
  EngineVariant v;
  v.spec = std::string(spec);
  if (spec == "default") return v;
  if (spec.empty()) return Status::error("an empty engine variant (use 'default')");
  size_t pos = 0;
  while (pos <= spec.size()) {
    const size_t end = std::min(spec.find(',', pos), spec.size());
    const std::string_view item = spec.substr(pos, end - pos);
    const size_t eq = item.find('=');
    if (eq == std::string_view::npos || eq == 0)
      return Status::error("engine variant '" + std::string(item) + "': expected key=value (" +
                           variant_keys_help() + ")");
    const std::string_view key = item.substr(0, eq), value = item.substr(eq + 1);
    const VariantKey* vk = find_key(key);
    if (!vk)
      return Status::error("unknown engine variant key '" + std::string(key) +
                           "' (known: " + variant_keys_help() + ")");
    EngineOptions probe;
    if (!vk->set(value, &probe).ok())
      return Status::error("engine variant " + std::string(key) + "=" + std::string(value) +
                           ": expected " + vk->key + "=" + vk->values);
    v.settings.emplace_back(std::string(key), std::string(value));
    pos = end + 1;
  }
  return v;
}

Result<std::pair<EngineVariant, EngineVariant>> parse_compare(std::string_view spec) {
  const size_t colon = spec.find(':');
  if (colon == std::string_view::npos || spec.find(':', colon + 1) != std::string_view::npos)
    return Status::error("--compare: expected two variants A:B, e.g. kv=f16:kv=f32 (" +
                         variant_keys_help() + ")");
  auto a = parse_variant(spec.substr(0, colon));
  if (!a.ok()) return Status::error("--compare: " + a.error());
  auto b = parse_variant(spec.substr(colon + 1));
  if (!b.ok()) return Status::error("--compare: " + b.error());
  return std::pair{std::move(a).value(), std::move(b).value()};
}

Status apply_variant(const EngineVariant& v, EngineOptions* base) {
  for (const auto& [k, val] : v.settings) {
    const VariantKey* vk = find_key(k);
    if (!vk || !vk->set(val, base).ok())
      return Status::error("engine variant " + k + "=" + val + " is not valid");
  }
  return Status();
}

double binomial_two_sided_p(int k, int n) {
  if (n <= 0) return 1;
  const int m = std::min(k, n - k);
  if (2 * m == n) return 1;
  // P(X <= m) = sum_{i<=m} C(n, i) / 2^n, in logs (n may be thousands), largest term first.
  const double ln2n = n * std::log(2.0);
  auto log_term = [&](int i) {
    return std::lgamma(n + 1.0) - std::lgamma(i + 1.0) - std::lgamma(n - i + 1.0) - ln2n;
  };
  const double top = log_term(m);
  double sum = 0;
  for (int i = m; i >= 0; --i) {
    const double t = std::exp(log_term(i) - top);
    sum += t;
    if (t < 1e-17 * sum) break;  // the terms shrink monotonically below the mode
  }
  return std::min(1.0, 2 * std::exp(top) * sum);
}

SignTest sign_test(std::span<const double> a, std::span<const double> b) {
  SignTest t;
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    if (a[i] > b[i])
      ++t.a_better;
    else if (b[i] > a[i])
      ++t.b_better;
    else
      ++t.ties;
  }
  t.p = binomial_two_sided_p(t.a_better, t.a_better + t.b_better);
  return t;
}

}  // namespace g4
