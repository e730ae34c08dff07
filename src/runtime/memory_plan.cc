#include "runtime/memory_plan.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>

namespace g4 {

Result<KvType> parse_kv_type(const std::string& s) {
  std::string l = s;
  for (char& c : l) c = char(std::tolower(static_cast<unsigned char>(c)));
  static const std::pair<const char*, KvType> kTypes[] = {{"f32", KvType::kF32},
                                                          {"f16", KvType::kF16},
                                                          {"bf16", KvType::kBf16},
                                                          {"q8_0", KvType::kQ8_0},
                                                          {"q4_0", KvType::kQ4_0}};
  for (const auto& [n, t] : kTypes)
    if (l == n) return t;
  return Status::error("unknown KV type '" + s + "' (f32, f16, bf16, q8_0, q4_0)");
}

const char* kv_type_name(KvType t) {
  switch (t) {
    case KvType::kF32:
      return "f32";
    case KvType::kF16:
      return "f16";
    case KvType::kBf16:
      return "bf16";
    case KvType::kQ8_0:
      return "q8_0";
    case KvType::kQ4_0:
      return "q4_0";
  }
  return "?";
}

int64_t kv_row_bytes(KvType t, int64_t n) {
  const int64_t blocks = (n + 31) / 32;
  switch (t) {
    case KvType::kF32:
      return 4 * n;
    case KvType::kF16:
    case KvType::kBf16:
      return 2 * n;
    case KvType::kQ8_0:
      return 34 * blocks;  // fp16 scale + 32 int8
    case KvType::kQ4_0:
      return 18 * blocks;  // fp16 scale + 16 bytes of nibbles
  }
  return 0;
}

int kv_block_size(int block_tokens, int64_t n_ctx) {
  int b = 1;
  while (b < block_tokens && b < n_ctx) b *= 2;
  return b;
}

KvPlan plan_kv(const std::vector<KvLayerGeometry>& layers, const KvPlanOptions& o) {
  KvPlan p;
  p.types = {
      {"global", 0, o.global_type}, {"sliding", 0, o.sliding_type}, {"shared", 0, o.global_type}};
  KvTypePlan& glob = p.types[0];
  KvTypePlan& slide = p.types[1];
  KvTypePlan& shared = p.types[2];
  p.block_tokens = kv_block_size(o.block_tokens, o.n_ctx);
  p.blocks_per_seq = (o.n_ctx + p.block_tokens - 1) / p.block_tokens;
  const int64_t slack = std::max(o.max_chunk, o.ring_slack);
  for (const KvLayerGeometry& g : layers) {
    const int64_t n = int64_t(g.n_kv_heads) * g.head_dim;  // values per position and K or V
    if (g.donor >= 0) {
      ++shared.layers;
    } else if (g.window > 0) {
      const int64_t cap = std::min<int64_t>(o.n_ctx, g.window + slack);
      const int64_t row = 2 * kv_row_bytes(o.sliding_type, n);
      ++slide.layers;
      slide.bytes_per_token += row;
      slide.slots_per_seq = std::max(slide.slots_per_seq, cap);
      slide.bytes_per_seq += cap * row;
    } else {
      const int64_t row = 2 * kv_row_bytes(o.global_type, n);
      ++glob.layers;
      glob.bytes_per_token += row;
      const int64_t pages = std::max<int64_t>(1, p.block_tokens / std::max(1, o.page_tokens));
      p.block_bytes += int64_t(p.block_tokens) * row + (o.sparse ? pages * n * 2 * 2 : 0);
    }
  }
  glob.slots_per_seq = p.blocks_per_seq * p.block_tokens;
  glob.bytes_per_seq = p.blocks_per_seq * p.block_bytes;
  for (KvTypePlan& t : p.types) {
    t.bytes = t.bytes_per_seq * o.parallel;
    p.bytes_per_seq += t.bytes_per_seq;
    p.bytes += t.bytes;
  }
  return p;
}

Result<int64_t> parse_byte_size(const std::string& s) {
  const Status bad = Status::error("bad size '" + s +
                                   "': expected a number of bytes with an optional unit, e.g. "
                                   "16GiB, 512MiB, 2G, 1000000");
  size_t i = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
  if (i == 0) return bad;
  double v = 0;
  try {
    size_t used = 0;
    v = std::stod(s.substr(0, i), &used);
    if (used != i) return bad;
  } catch (...) {
    return bad;
  }
  std::string unit = s.substr(i);
  if (!unit.empty() && unit.front() == ' ') unit.erase(0, 1);
  for (char& c : unit) c = char(std::tolower(static_cast<unsigned char>(c)));
  if (!unit.empty() && unit.back() == 'b' && unit != "b") unit.pop_back();  // "GB" = "G"
  double mul = 0;
  static const std::pair<const char*, double> kUnits[] = {{"", 1},
                                                          {"b", 1},
                                                          {"k", 1e3},
                                                          {"m", 1e6},
                                                          {"g", 1e9},
                                                          {"t", 1e12},
                                                          {"ki", 1024.0},
                                                          {"mi", 1048576.0},
                                                          {"gi", 1073741824.0},
                                                          {"ti", 1099511627776.0}};
  for (const auto& [u, m] : kUnits)
    if (unit == u) mul = m;
  if (mul == 0) return bad;
  const double bytes = v * mul;
  if (!(bytes >= 1) || bytes > 9.0e18) return bad;
  return int64_t(std::llround(bytes));
}

std::string format_bytes(int64_t n) {
  static const char* const kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  if (n < 1024 && n > -1024) return std::to_string(n) + " B";
  double v = double(n) / 1024;
  int u = 0;
  while ((v >= 1024 || v <= -1024) && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f %s", v, kUnits[u]);
  return buf;
}

int64_t largest_fitting(int64_t lo, int64_t hi, const std::function<bool(int64_t)>& fits) {
  if (lo > hi || !fits(lo)) return lo - 1;
  while (lo < hi) {  // invariant: fits(lo)
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (fits(mid))
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

}  // namespace g4
