#include "runtime/kv_cache.h"

#include <algorithm>

namespace g4 {

KvCache::KvCache(std::vector<KvLayerGeometry> layers, int64_t n_ctx, int64_t max_chunk,
                 int64_t ring_slack)
    : layers_(std::move(layers)), n_ctx_(n_ctx), max_chunk_(max_chunk) {
  const int64_t slack = std::max(max_chunk_, ring_slack);
  for (const auto& g : layers_) {
    cap_.push_back(g.window > 0 ? std::min<int64_t>(n_ctx_, g.window + slack) : n_ctx_);
  }
}

Status KvCache::add_sequence(int seq) {
  if (seqs_.count(seq)) return Status::error("sequence " + std::to_string(seq) + " exists");
  Seq s;
  for (size_t l = 0; l < layers_.size(); ++l) {
    const size_t n = size_t(cap_[l]) * size_t(layers_[l].n_kv_heads) * size_t(layers_[l].head_dim);
    s.k.emplace_back(n);
    s.v.emplace_back(n);
  }
  seqs_.emplace(seq, std::move(s));
  return Status();
}

void KvCache::remove_sequence(int seq) {
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
  get(seq).length = n;
}

bool KvCache::can_truncate(int seq, int64_t n) const {
  const int64_t len = get(seq).length;
  if (n > len || n < 0) return false;
  for (size_t l = 0; l < layers_.size(); ++l) {
    if (layers_[l].window > 0 && len - n > cap_[l] - layers_[l].window) return false;
  }
  return true;
}

bool KvCache::can_copy_prefix(int src, int64_t n) const {
  return can_truncate(src, n);  // same condition: the window before n is still in every ring
}

void KvCache::copy_prefix(int src, int dst, int64_t n) {
  G4_CHECK(src != dst && can_copy_prefix(src, n));
  Seq& s = get(src);
  Seq& d = get(dst);
  for (size_t l = 0; l < layers_.size(); ++l) {
    const size_t row = size_t(layers_[l].n_kv_heads) * size_t(layers_[l].head_dim);
    const int64_t from = layers_[l].window > 0 ? std::max<int64_t>(0, n - layers_[l].window) : 0;
    for (int64_t p = from; p < n; ++p) {
      const size_t off = size_t(p % cap_[l]) * row;
      std::copy_n(s.k[l].data() + off, row, d.k[l].data() + off);
      std::copy_n(s.v[l].data() + off, row, d.v[l].data() + off);
    }
  }
  d.length = n;
}

uint16_t* KvCache::k(int seq, int layer) {
  return get(seq).k[size_t(layer)].data();
}
uint16_t* KvCache::v(int seq, int layer) {
  return get(seq).v[size_t(layer)].data();
}

size_t KvCache::bytes() const {
  size_t per_seq = 0;
  for (size_t l = 0; l < layers_.size(); ++l) {
    per_seq +=
        2 * size_t(cap_[l]) * size_t(layers_[l].n_kv_heads) * size_t(layers_[l].head_dim) * 2;
  }
  return per_seq * seqs_.size();
}

}  // namespace g4
