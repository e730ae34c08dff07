#include "runtime/kv_cache.h"

#include <algorithm>

#include "core/fp16.h"

namespace g4 {

KvCache::KvCache(std::vector<KvLayerGeometry> layers, int64_t n_ctx, int64_t max_chunk, bool f32,
                 int64_t ring_slack)
    : layers_(std::move(layers)), n_ctx_(n_ctx), max_chunk_(max_chunk), f32_(f32) {
  const int64_t slack = std::max(max_chunk_, ring_slack);
  for (size_t l = 0; l < layers_.size(); ++l) {
    const auto& g = layers_[l];
    G4_CHECK(g.donor < int(l));  // a donor precedes its sharers and owns its own cache
    if (g.donor >= 0) G4_CHECK(layers_[size_t(g.donor)].donor < 0);
    cap_.push_back(g.donor >= 0   ? cap_[size_t(g.donor)]
                   : g.window > 0 ? std::min<int64_t>(n_ctx_, g.window + slack)
                                  : n_ctx_);
  }
}

Status KvCache::add_sequence(int seq) {
  if (seqs_.count(seq)) return Status::error("sequence " + std::to_string(seq) + " exists");
  Seq s;
  for (size_t l = 0; l < layers_.size(); ++l) {
    const size_t n = layers_[l].donor >= 0 ? 0
                                           : size_t(cap_[l]) * size_t(layers_[l].n_kv_heads) *
                                                 size_t(layers_[l].head_dim);
    s.k.emplace_back(f32_ ? 0 : n);
    s.v.emplace_back(f32_ ? 0 : n);
    s.kf.emplace_back(f32_ ? n : 0);
    s.vf.emplace_back(f32_ ? n : 0);
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
    if (layers_[l].donor >= 0) continue;  // sharers read their donor's arrays
    const size_t row = size_t(layers_[l].n_kv_heads) * size_t(layers_[l].head_dim);
    const int64_t from = layers_[l].window > 0 ? std::max<int64_t>(0, n - layers_[l].window) : 0;
    for (int64_t p = from; p < n; ++p) {
      const size_t off = size_t(p % cap_[l]) * row;
      if (f32_) {
        std::copy_n(s.kf[l].data() + off, row, d.kf[l].data() + off);
        std::copy_n(s.vf[l].data() + off, row, d.vf[l].data() + off);
      } else {
        std::copy_n(s.k[l].data() + off, row, d.k[l].data() + off);
        std::copy_n(s.v[l].data() + off, row, d.v[l].data() + off);
      }
    }
  }
  d.length = n;
}

int KvCache::owner(int layer) const {
  const int d = layers_[size_t(layer)].donor;
  return d >= 0 ? d : layer;
}
uint16_t* KvCache::k(int seq, int layer) {
  G4_CHECK(!f32_);
  return get(seq).k[size_t(owner(layer))].data();
}
uint16_t* KvCache::v(int seq, int layer) {
  G4_CHECK(!f32_);
  return get(seq).v[size_t(owner(layer))].data();
}
const void* KvCache::k_data(int seq, int layer) {
  Seq& s = get(seq);
  const size_t o = size_t(owner(layer));
  return f32_ ? static_cast<const void*>(s.kf[o].data()) : s.k[o].data();
}
const void* KvCache::v_data(int seq, int layer) {
  Seq& s = get(seq);
  const size_t o = size_t(owner(layer));
  return f32_ ? static_cast<const void*>(s.vf[o].data()) : s.v[o].data();
}
void KvCache::store(int seq, int layer, int64_t slot, const float* k_row, const float* v_row) {
  G4_CHECK(layers_[size_t(layer)].donor < 0);  // sharers never write their donor's cache
  Seq& s = get(seq);
  const size_t n =
      size_t(layers_[size_t(layer)].n_kv_heads) * size_t(layers_[size_t(layer)].head_dim);
  const size_t at = size_t(slot) * n;
  if (f32_) {
    std::copy(k_row, k_row + n, s.kf[size_t(layer)].data() + at);
    std::copy(v_row, v_row + n, s.vf[size_t(layer)].data() + at);
  } else {
    uint16_t* kc = s.k[size_t(layer)].data() + at;
    uint16_t* vc = s.v[size_t(layer)].data() + at;
    for (size_t i = 0; i < n; ++i) {
      kc[i] = fp32_to_fp16(k_row[i]);
      vc[i] = fp32_to_fp16(v_row[i]);
    }
  }
}

size_t KvCache::bytes() const {
  size_t per_seq = 0;
  for (size_t l = 0; l < layers_.size(); ++l) {
    if (layers_[l].donor >= 0) continue;
    per_seq += 2 * size_t(cap_[l]) * size_t(layers_[l].n_kv_heads) * size_t(layers_[l].head_dim) *
               (f32_ ? 4 : 2);
  }
  return per_seq * seqs_.size();
}

}  // namespace g4
