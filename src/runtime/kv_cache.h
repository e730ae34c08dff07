// Per-sequence KV cache with per-layer geometry.
//
// K and V are stored as fp16, one slot per position: [slot][n_kv_heads][head_dim].
// Global layers keep n_ctx slots (slot = position). Sliding-window layers keep a ring of
// window + max_chunk slots (slot = position % capacity): a step may append up to max_chunk
// tokens and every query of that step still finds its whole window in the ring, so a chunk's
// K/V can be written before any of its attention runs (ref: gemma-architecture.md §2.7, §6.12).
// The cache knows nothing about the model beyond these shapes.
// Thread-safety: distinct sequences may be written concurrently; structure changes
// (add/remove) must not overlap a forward pass.
#pragma once
#include <cstdint>
#include <map>
#include <vector>

#include "core/status.h"

namespace g4 {

struct KvLayerGeometry {
  int n_kv_heads = 1;
  int head_dim = 256;
  int window = 0;  // 0 = global (full context)
  // >= 0: this layer owns no cache and reads (and never writes) layer `donor`'s, which must
  // come earlier (Gemma 4 KV sharing, spec §2.7). k()/v()/capacity() then return the donor's.
  int donor = -1;
};

class KvCache {
 public:
  // f32 = true stores K/V as float32 instead of fp16 (exact numerics; twice the memory).
  // Sliding rings hold window + max(max_chunk, ring_slack) slots; extra slack lets a
  // sequence be cut back (or its prefix copied) further behind its end (server prefix cache).
  KvCache(std::vector<KvLayerGeometry> layers, int64_t n_ctx, int64_t max_chunk, bool f32 = false,
          int64_t ring_slack = 0);

  Status add_sequence(int seq);
  void remove_sequence(int seq);
  bool has_sequence(int seq) const { return seqs_.count(seq) != 0; }

  int64_t n_ctx() const { return n_ctx_; }
  int64_t max_chunk() const { return max_chunk_; }
  int64_t capacity(int layer) const { return cap_[size_t(layer)]; }
  const KvLayerGeometry& geometry(int layer) const { return layers_[size_t(layer)]; }
  int n_layers() const { return int(layers_.size()); }

  // Number of positions stored for seq (the next position to write).
  int64_t length(int seq) const;
  void set_length(int seq, int64_t n);
  // Whether length can be cut back to n without losing window entries of sliding layers.
  bool can_truncate(int seq, int64_t n) const;

  // Whether dst can take src's first n positions: every sliding layer still holds the
  // window before n. copy_prefix makes dst's length n with those K/V (src unchanged).
  bool can_copy_prefix(int src, int64_t n) const;
  void copy_prefix(int src, int dst, int64_t n);

  // The layer whose arrays `layer` uses (itself, or its donor).
  int owner(int layer) const;
  // Base of the [capacity][n_kv_heads][head_dim] arrays of one layer of one sequence
  // (fp16 caches only).
  uint16_t* k(int seq, int layer);
  uint16_t* v(int seq, int layer);
  bool is_f32() const { return f32_; }
  // Storage-format-agnostic access: the arrays (uint16_t fp16 or float, see is_f32()), and a
  // write of one slot's K and V rows ([n_kv_heads * head_dim] f32 each) in the cache's format.
  const void* k_data(int seq, int layer);
  const void* v_data(int seq, int layer);
  void store(int seq, int layer, int64_t slot, const float* k_row, const float* v_row);
  size_t bytes() const;

 private:
  struct Seq {
    int64_t length = 0;
    std::vector<std::vector<uint16_t>> k, v;  // per layer (fp16 caches)
    std::vector<std::vector<float>> kf, vf;   // per layer (f32 caches)
  };
  Seq& get(int seq);
  const Seq& get(int seq) const;

  std::vector<KvLayerGeometry> layers_;
  std::vector<int64_t> cap_;
  int64_t n_ctx_;
  int64_t max_chunk_;
  bool f32_ = false;
  std::map<int, Seq> seqs_;
};

}  // namespace g4
