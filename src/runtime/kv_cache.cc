#include "runtime/kv_cache.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "core/fp16.h"
#include "kernels/quant.h"
#include "kernels/quantize_ref.h"
#include "runtime/memory_plan.h"

namespace g4 {

// One owning global layer's K and V blocks: address space reserved up front, committed by
// the OS page by page as blocks are first written (so an idle pool costs nothing resident).
struct KvCache::Pool {
  // [n_blocks][block_tokens][row] K, then the same for V, then (sparse routing) the key
  // summaries [n_blocks][pages per block][n_kv_heads][2][head_dim] f16 (summary_lo/_hi).
  uint8_t* base = nullptr;
  size_t k_bytes = 0;  // bytes of the K half
  size_t map_bytes = 0;
  uint16_t* summary = nullptr;
  Pool(size_t half, size_t summary_bytes) : k_bytes(half), map_bytes(2 * half + summary_bytes) {
    if (map_bytes == 0) return;
    void* p = mmap(nullptr, map_bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    G4_CHECK(p != MAP_FAILED);
#ifdef MADV_HUGEPAGE
    madvise(p, map_bytes, MADV_HUGEPAGE);
#endif
    base = static_cast<uint8_t*>(p);
    if (summary_bytes > 0) summary = reinterpret_cast<uint16_t*>(base + 2 * half);
  }
  ~Pool() {
    if (base) munmap(base, map_bytes);
  }
};

const char* kv_cache_type_name(KvCacheType t) {
  switch (t) {
    case KvCacheType::kF32:
      return "f32";
    case KvCacheType::kQ8_0:
      return "q8_0";
    case KvCacheType::kQ4_0:
      return "q4_0";
    case KvCacheType::kBF16:
      return "bf16";
    case KvCacheType::kF16:
      break;
  }
  return "f16";
}

bool parse_kv_cache_type(const std::string& s, KvCacheType* t) {
  for (KvCacheType k : {KvCacheType::kF16, KvCacheType::kF32, KvCacheType::kQ8_0,
                        KvCacheType::kQ4_0, KvCacheType::kBF16}) {
    if (s == kv_cache_type_name(k)) {
      *t = k;
      return true;
    }
  }
  return false;
}

namespace {
DType kv_dtype(KvCacheType t) {
  switch (t) {
    case KvCacheType::kF32:
      return DType::kF32;
    case KvCacheType::kQ8_0:
      return DType::kQ8_0;
    case KvCacheType::kQ4_0:
      return DType::kQ4_0;
    case KvCacheType::kBF16:
      return DType::kBF16;
    case KvCacheType::kF16:
      break;
  }
  return DType::kF16;
}
// Blocks of block_tokens rounded up to a power of two, no longer than the context needs (a
// 64-token test context gets 64-token blocks): the same rule g4 plan uses.
int block_size(const KvCacheOptions& o) {
  return kv_block_size(o.block_tokens, o.n_ctx);
}
int log2_of(int n) {
  int s = 0;
  while ((1 << s) < n) ++s;
  return s;
}
KvCacheOptions shorthand(int64_t n_ctx, int64_t max_chunk, bool f32, int64_t ring_slack) {
  KvCacheOptions o;
  o.n_ctx = n_ctx;
  o.max_chunk = max_chunk;
  o.f32 = f32;
  o.ring_slack = ring_slack;
  return o;
}
}  // namespace

KvCache::KvCache(std::vector<KvLayerGeometry> layers, int64_t n_ctx, int64_t max_chunk, bool f32,
                 int64_t ring_slack)
    : KvCache(std::move(layers), shorthand(n_ctx, max_chunk, f32, ring_slack)) {}

KvCache::KvCache(std::vector<KvLayerGeometry> layers, const KvCacheOptions& o)
    : layers_(std::move(layers)),
      n_ctx_(o.n_ctx),
      max_chunk_(o.max_chunk),
      type_(o.f32 ? KvCacheType::kF32 : o.type),
      sparse_(o.sparse),
      block_shift_(log2_of(block_size(o))),
      page_shift_(std::min(log2_of(std::max(1, o.sparse.page_tokens)), log2_of(block_size(o)))),
      blocks_(block_size(o),
              (std::max(o.pool_tokens, o.n_ctx) + block_size(o) - 1) / block_size(o)) {
  const int64_t slack = std::max(max_chunk_, o.ring_slack);
  const int64_t n_blocks = blocks_.stats().total;
  for (size_t l = 0; l < layers_.size(); ++l) {
    const auto& g = layers_[l];
    G4_CHECK(g.donor < int(l));  // a donor precedes its sharers and owns its own cache
    G4_CHECK(!is_blocked(type_) || g.head_dim % 32 == 0);  // checked by the engine
    if (g.donor >= 0) G4_CHECK(layers_[size_t(g.donor)].donor < 0);
    cap_.push_back(g.donor >= 0   ? cap_[size_t(g.donor)]
                   : g.window > 0 ? std::min<int64_t>(n_ctx_, g.window + slack)
                                  : n_ctx_);
    pool_of_.push_back(-1);
    if (g.donor >= 0) continue;
    if (g.window > 0) {
      ring_bytes_ += 2 * size_t(cap_[l]) * row_bytes(int(l));
    } else {
      pool_of_[l] = int(pools_.size());
      const size_t block = size_t(block_tokens()) * row_bytes(int(l));
      const size_t summary =
          sparse_.enabled ? size_t(n_blocks) * summary_values(int(l)) * sizeof(uint16_t) : 0;
      pools_.push_back(std::make_unique<Pool>(size_t(n_blocks) * block, summary));
      block_bytes_ += 2 * block + (sparse_.enabled ? summary_values(int(l)) * sizeof(uint16_t) : 0);
    }
  }
}

KvCache::~KvCache() = default;

size_t KvCache::page_values(int layer) const {
  const auto& g = layers_[size_t(layer)];
  return size_t(g.n_kv_heads) * 2 * size_t(g.head_dim);
}
size_t KvCache::summary_values(int layer) const {
  return page_values(layer) << (block_shift_ - page_shift_);
}

size_t KvCache::row_bytes(int layer) const {
  const auto& g = layers_[size_t(layer)];
  const size_t n = size_t(g.n_kv_heads) * size_t(g.head_dim);
  switch (type_) {
    case KvCacheType::kF32:
      return n * 4;
    case KvCacheType::kQ8_0:
      return n / 32 * sizeof(BlockQ8_0);
    case KvCacheType::kQ4_0:
      return n / 32 * sizeof(BlockQ4_0);
    case KvCacheType::kF16:
    case KvCacheType::kBF16:
      break;
  }
  return n * 2;
}

Status KvCache::add_sequence(int seq) {
  if (seqs_.count(seq)) return Status::error("sequence " + std::to_string(seq) + " exists");
  if (Status st = blocks_.add_sequence(seq); !st.ok()) return st;
  Seq s;
  s.routing = sparse_;
  s.ring.resize(layers_.size());
  for (size_t l = 0; l < layers_.size(); ++l) {
    if (layers_[l].donor < 0 && layers_[l].window > 0)
      s.ring[l].assign(2 * size_t(cap_[l]) * row_bytes(int(l)), 0);
  }
  seqs_.emplace(seq, std::move(s));
  return Status();
}

Status KvCache::set_routing(int seq, const SparseAttentionOptions& o) {
  if (!has_sequence(seq)) return Status::error("sequence " + std::to_string(seq) + " is unknown");
  if (o.enabled && !sparse_.enabled)
    return Status::error("sparse routing needs a cache that keeps key summaries (--sparse)");
  if (o.enabled && o.page_tokens != sparse_.page_tokens)
    return Status::error("sparse routing: the page size is the cache's (" +
                         std::to_string(sparse_.page_tokens) + ")");
  if (*budget_error(o) != '\0')
    return Status::error(std::string("sparse routing: ") + budget_error(o));
  if (o.min_context < 0 || o.recent_pages < 0)
    return Status::error("sparse routing: start and recent pages must be >= 0");
  get(seq).routing = o;
  return Status();
}

void KvCache::remove_sequence(int seq) {
  blocks_.remove_sequence(seq);
  seqs_.erase(seq);
}

KvCache::Seq& KvCache::get(int seq) {
  auto it = seqs_.find(seq);
  G4_CHECK(it != seqs_.end());
  return it->second;
}
const KvCache::Seq& KvCache::get(int seq) const {
  auto it = seqs_.find(seq);
  G4_CHECK(it != seqs_.end());
  return it->second;
}

int64_t KvCache::length(int seq) const {
  return get(seq).length;
}

void KvCache::set_length(int seq, int64_t n) {
  Seq& s = get(seq);
  G4_CHECK(n >= 0 && n <= blocks_.length(seq));  // growth goes through reserve()
  blocks_.truncate(seq, n);
  s.length = n;
}

bool KvCache::can_truncate(int seq, int64_t n) const {
  const int64_t len = get(seq).length;
  if (n > len || n < 0) return false;
  for (size_t l = 0; l < layers_.size(); ++l) {
    if (layers_[l].window > 0 && len - n > cap_[l] - layers_[l].window) return false;
  }
  return true;
}

int64_t KvCache::blocks_needed(int seq, int64_t n) const {
  // Blocks reserved past n and not written yet are handed back by reserve(), not taken.
  if (n <= get(seq).length || blocks_.length(seq) >= n) return 0;
  return blocks_.blocks_needed(seq, n);
}

Status KvCache::reserve(int seq, int64_t n) {
  if (!has_sequence(seq)) return Status::error("unknown sequence " + std::to_string(seq));
  if (blocks_.length(seq) > n) blocks_.truncate(seq, std::max(n, get(seq).length));
  auto copies = blocks_.grow(seq, n);
  if (!copies.ok()) return copies.status();
  for (const KvBlockCopy& c : copies.value()) {
    for (size_t l = 0; l < layers_.size(); ++l) {
      if (pool_of_[l] < 0) continue;
      const Pool& p = *pools_[size_t(pool_of_[l])];
      const size_t block = size_t(block_tokens()) * row_bytes(int(l));
      const size_t used = size_t(c.tokens) * row_bytes(int(l));
      for (size_t half : {size_t(0), p.k_bytes})
        std::memcpy(p.base + half + size_t(c.to) * block, p.base + half + size_t(c.from) * block,
                    used);
      if (p.summary) {
        const size_t n = summary_values(int(l));
        std::memcpy(p.summary + size_t(c.to) * n, p.summary + size_t(c.from) * n,
                    n * sizeof(uint16_t));
      }
    }
  }
  return Status();
}

Status KvCache::reserve_all(const std::vector<std::pair<int, int64_t>>& seq_len) {
  int64_t need = 0;
  for (const auto& [seq, n] : seq_len) {
    if (!has_sequence(seq)) return Status::error("unknown sequence " + std::to_string(seq));
    need += blocks_needed(seq, n);
  }
  const int64_t free = free_blocks();
  if (need > free)
    return Status::error("KV memory full: the step needs " + std::to_string(need) + " blocks of " +
                         std::to_string(block_tokens()) + " positions, " + std::to_string(free) +
                         " are free");
  for (const auto& [seq, n] : seq_len) {
    Status st = reserve(seq, n);
    G4_CHECK(st.ok());  // counted above
  }
  return Status();
}

bool KvCache::can_copy_prefix(int src, int64_t n) const {
  return can_truncate(src, n);  // same condition: the window before n is still in every ring
}

void KvCache::copy_prefix(int src, int dst, int64_t n) {
  G4_CHECK(src != dst && can_copy_prefix(src, n));
  Seq& s = get(src);
  Seq& d = get(dst);
  blocks_.truncate(dst, 0);
  G4_CHECK(blocks_.fork(src, dst, n).ok());  // global layers: shared blocks, no copy
  for (size_t l = 0; l < layers_.size(); ++l) {
    if (layers_[l].donor >= 0 || layers_[l].window == 0) continue;
    const size_t row = row_bytes(int(l));
    const size_t v_off = size_t(cap_[l]) * row;
    for (int64_t p = std::max<int64_t>(0, n - layers_[l].window); p < n; ++p) {
      const size_t off = size_t(p % cap_[l]) * row;
      std::memcpy(d.ring[l].data() + off, s.ring[l].data() + off, row);
      std::memcpy(d.ring[l].data() + v_off + off, s.ring[l].data() + v_off + off, row);
    }
  }
  d.length = n;
}

int KvCache::owner(int layer) const {
  const int d = layers_[size_t(layer)].donor;
  return d >= 0 ? d : layer;
}

KvView KvCache::view(int seq, int layer) const {
  const int o = owner(layer);
  const Seq& s = get(seq);
  KvView w;
  w.capacity = cap_[size_t(o)];
  if (pool_of_[size_t(o)] >= 0) {
    const Pool& p = *pools_[size_t(pool_of_[size_t(o)])];
    w.k = p.base;
    w.v = p.base + p.k_bytes;
    w.blocks = blocks_.table(seq).data();
    w.block_shift = block_shift_;
  } else {
    w.k = s.ring[size_t(o)].data();
    w.v = s.ring[size_t(o)].data() + size_t(cap_[size_t(o)]) * row_bytes(o);
  }
  return w;
}

uint8_t* KvCache::row_ptr(int seq, int layer, int64_t pos, bool value) {
  const int o = owner(layer);
  const KvView w = view(seq, o);
  G4_CHECK(pos >= 0 && (w.blocks == nullptr || pos < blocks_.length(seq)));
  const uint8_t* base = static_cast<const uint8_t*>(value ? w.v : w.k);
  return const_cast<uint8_t*>(base) + size_t(w.row(pos)) * row_bytes(o);
}
void* KvCache::k_row(int seq, int layer, int64_t pos) {
  return row_ptr(seq, layer, pos, false);
}
void* KvCache::v_row(int seq, int layer, int64_t pos) {
  return row_ptr(seq, layer, pos, true);
}

void KvCache::store(int seq, int layer, int64_t pos, const float* k_row, const float* v_row) {
  G4_CHECK(layers_[size_t(layer)].donor < 0);  // sharers never write their donor's cache
  const size_t n =
      size_t(layers_[size_t(layer)].n_kv_heads) * size_t(layers_[size_t(layer)].head_dim);
  uint8_t* kc = row_ptr(seq, layer, pos, false);
  uint8_t* vc = row_ptr(seq, layer, pos, true);
  switch (type_) {
    case KvCacheType::kF32:
      std::memcpy(kc, k_row, n * sizeof(float));
      std::memcpy(vc, v_row, n * sizeof(float));
      return;
    case KvCacheType::kQ8_0:
      quantize_activation(DType::kQ8_0, k_row, kc, int64_t(n));
      quantize_activation(DType::kQ8_0, v_row, vc, int64_t(n));
      return;
    case KvCacheType::kQ4_0:  // ggml's quantize_row_q4_0_ref, as llama.cpp's q4_0 cache
    case KvCacheType::kBF16:
      quantize_row(kv_dtype(type_), k_row, kc, int64_t(n));
      quantize_row(kv_dtype(type_), v_row, vc, int64_t(n));
      return;
    case KvCacheType::kF16:
      break;
  }
  uint16_t* k16 = reinterpret_cast<uint16_t*>(kc);
  uint16_t* v16 = reinterpret_cast<uint16_t*>(vc);
  for (size_t i = 0; i < n; ++i) {
    k16[i] = fp32_to_fp16(k_row[i]);
    v16[i] = fp32_to_fp16(v_row[i]);
  }
}

BlockSummaries KvCache::summaries(int seq, int layer, int kv_head) const {
  const int o = owner(layer);
  G4_CHECK(pool_of_[size_t(o)] >= 0);
  const Pool& p = *pools_[size_t(pool_of_[size_t(o)])];
  G4_CHECK(p.summary != nullptr);
  BlockSummaries s;
  s.block_stride = summary_values(o);
  s.page_stride = page_values(o);
  s.page_shift = block_shift_ - page_shift_;
  s.base = p.summary + size_t(kv_head) * 2 * size_t(layers_[size_t(o)].head_dim);
  s.table = blocks_.table(seq).data();
  return s;
}

void KvCache::summarize(int seq, int layer, int64_t from, int64_t to) {
  if (pool_of_[size_t(layer)] < 0 || layers_[size_t(layer)].donor >= 0) return;
  Pool& p = *pools_[size_t(pool_of_[size_t(layer)])];
  if (p.summary == nullptr) return;
  const auto& g = layers_[size_t(layer)];
  const int hd = g.head_dim;
  const std::vector<int32_t>& table = blocks_.table(seq);
  const int64_t mask = (int64_t(1) << block_shift_) - 1;
  const size_t n = summary_values(layer);
  thread_local std::vector<float> row;  // no allocation per step once warm
  row.resize(size_t(g.n_kv_heads) * size_t(hd));
  for (int64_t pos = from; pos < to; ++pos) {
    const uint8_t* k = row_ptr(seq, layer, pos, false);
    switch (type_) {
      case KvCacheType::kF32:
        std::memcpy(row.data(), k, row.size() * sizeof(float));
        break;
      case KvCacheType::kQ8_0:
      case KvCacheType::kQ4_0:
      case KvCacheType::kBF16:
        dequantize_row(kv_dtype(type_), k, row.data(), int64_t(row.size()));
        break;
      case KvCacheType::kF16:
        for (size_t i = 0; i < row.size(); ++i)
          row[i] = fp16_to_fp32(reinterpret_cast<const uint16_t*>(k)[i]);
        break;
    }
    uint16_t* sm = p.summary + size_t(table[size_t(pos >> block_shift_)]) * n +
                   size_t((pos & mask) >> page_shift_) * page_values(layer);
    const bool fresh = (pos & ((int64_t(1) << page_shift_) - 1)) == 0;
    for (int h = 0; h < g.n_kv_heads; ++h) {
      uint16_t* mn = sm + size_t(h) * 2 * size_t(hd);
      uint16_t* mx = mn + hd;
      const float* r = row.data() + size_t(h) * size_t(hd);
      // The stored values are f16, so min(stored, r) rounded outward is the stored value
      // unless r is below it, then r rounded outward: the page's min/max rounded once, and a
      // rounding only where the extreme moves (NaN never moves one, as std::min's didn't).
      for (int i = 0; i < hd; ++i) {
        if (fresh || r[i] < fp16_to_fp32(mn[i])) mn[i] = summary_lo(r[i]);
        if (fresh || r[i] > fp16_to_fp32(mx[i])) mx[i] = summary_hi(r[i]);
      }
    }
  }
}

size_t KvCache::bytes() const {
  return ring_bytes_ * seqs_.size() + size_t(blocks_.stats().used) * block_bytes_;
}

}  // namespace g4
