// KV cache with per-layer geometry: paged global layers, ring buffers for sliding layers.
//
// K and V are stored as fp16 (or f32, bf16, q8_0, q4_0: KvCacheType), one row per position:
// [n_kv_heads][head_dim].
// - Global layers are paged: a pool of blocks of block_tokens positions, one block-id space
//   for all global layers (block b of a sequence holds the same positions in every global
//   layer), handed out by a KvBlockManager as sequences grow. Forks share blocks by reference
//   count and copy a block only when a sequence writes into one it shares. The pool is
//   reserved as address space and committed by the OS as blocks are first written, so memory
//   follows what sequences hold, not n_ctx per sequence.
// - Sliding-window layers keep a private ring per sequence of window + max_chunk slots
//   (slot = position % capacity): a step may append up to max_chunk tokens and every query
//   of that step still finds its whole window in the ring, so a chunk's K/V can be written
//   before any of its attention runs (ref: gemma-architecture.md §2.7, §6.12).
// - Gemma 4 KV-shared layers own nothing and read their donor's storage.
// Before a step writes, reserve() (called by the forward's batch check) gives every sequence
// of the step the blocks it will write; it fails, changing nothing, when the pool is short.
// The cache knows nothing about the model beyond these shapes.
// Thread-safety: distinct sequences may be written concurrently between reserve() calls;
// structure changes (add/remove/fork/reserve/set_length) must not overlap a forward pass.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "kernels/sparse_attention.h"
#include "runtime/kv_blocks.h"

namespace g4 {

struct KvLayerGeometry {
  int n_kv_heads = 1;
  int head_dim = 256;
  int window = 0;  // 0 = global (full context)
  // >= 0: this layer owns no cache and reads (and never writes) layer `donor`'s, which must
  // come earlier (Gemma 4 KV sharing, spec §2.7). Views then return the donor's storage.
  int donor = -1;
};

// K/V element storage: fp16 (default), f32 (exact numerics, twice the memory), bf16 (fp16's
// size, f32's range), q8_0 (ggml's blocks of 32: an fp16 scale and 32 int8, 34 bytes; about
// half of fp16) or q4_0 (ggml's blocks of 32: an fp16 scale and 32 4-bit values, 18 bytes;
// 28% of fp16). Quantized types need head sizes that are multiples of 32, which Gemma's
// 128/256/512 are. Rows are written with ggml's reference quantizers (quantize_row).
enum class KvCacheType { kF16, kF32, kQ8_0, kQ4_0, kBF16 };
const char* kv_cache_type_name(KvCacheType t);
// "f16", "f32", "bf16", "q8_0", "q4_0" -> type; false for anything else.
bool parse_kv_cache_type(const std::string& s, KvCacheType* t);

struct KvCacheOptions {
  int64_t n_ctx = 4096;
  int64_t max_chunk = 512;
  KvCacheType type = KvCacheType::kF16;
  bool f32 = false;  // shorthand for type = kF32
  // Extra sliding-ring slots beyond max_chunk: lets a sequence be cut back (or its prefix
  // forked) further behind its end (server prefix cache).
  int64_t ring_slack = 0;
  // Positions per global-layer block, rounded up to a power of two (and no more than the
  // context needs).
  int block_tokens = 256;
  // Global-layer positions the pool can hold over all sequences (rounded up to blocks);
  // 0 = one full context. Address space only until written.
  int64_t pool_tokens = 0;
  // Sparse attention routing on global layers: blocks keep key summaries (per KV head and
  // channel, min and max) that attention uses to choose blocks (kernels/sparse_attention.h).
  SparseAttentionOptions sparse;
};

// Where one layer of one sequence keeps its K/V rows. Row of position p:
//   paged (blocks != nullptr): (blocks[p >> block_shift] << block_shift) + (p & block_mask)
//   ring: p % capacity
struct KvView {
  const void* k = nullptr;
  const void* v = nullptr;
  int64_t capacity = 0;  // ring slots (paged: n_ctx)
  const int32_t* blocks = nullptr;
  int block_shift = 0;
  int64_t row(int64_t p) const {
    return blocks ? (int64_t(blocks[p >> block_shift]) << block_shift) +
                        (p & ((int64_t(1) << block_shift) - 1))
                  : p % capacity;
  }
};

class KvCache {
 public:
  explicit KvCache(std::vector<KvLayerGeometry> layers, const KvCacheOptions& o);
  // Shorthand for tests and single-sequence users: pool of one full context.
  KvCache(std::vector<KvLayerGeometry> layers, int64_t n_ctx, int64_t max_chunk, bool f32 = false,
          int64_t ring_slack = 0);
  ~KvCache();
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  Status add_sequence(int seq);
  void remove_sequence(int seq);
  bool has_sequence(int seq) const { return seqs_.count(seq) != 0; }

  int64_t n_ctx() const { return n_ctx_; }
  int64_t max_chunk() const { return max_chunk_; }
  // Ring slots of a sliding layer; n_ctx for a global one.
  int64_t capacity(int layer) const { return cap_[size_t(layer)]; }
  const KvLayerGeometry& geometry(int layer) const { return layers_[size_t(layer)]; }
  int n_layers() const { return int(layers_.size()); }
  bool paged(int layer) const { return layers_[size_t(owner(layer))].window == 0; }

  // Number of positions stored for seq (the next position to write).
  int64_t length(int seq) const;
  // Cuts seq back to n <= length (global blocks past n are released), or records that a step
  // wrote up to n (after reserve(seq, n)).
  void set_length(int seq, int64_t n);
  // Whether length can be cut back to n without losing window entries of sliding layers.
  bool can_truncate(int seq, int64_t n) const;

  // Gives seq the global blocks for positions [length, n), copying shared blocks it will
  // write into. Fails (nothing changed) when the pool has too few free blocks.
  Status reserve(int seq, int64_t n);
  // Free blocks reserve(seq, n) would take.
  int64_t blocks_needed(int seq, int64_t n) const;
  // Reserves several sequences at once: all or none.
  Status reserve_all(const std::vector<std::pair<int, int64_t>>& seq_len);

  // Whether dst can take src's first n positions: every sliding layer still holds the
  // window before n. copy_prefix makes dst's length n with those K/V (src unchanged): global
  // layers by sharing src's blocks, sliding rings by copying the window.
  bool can_copy_prefix(int src, int64_t n) const;
  void copy_prefix(int src, int dst, int64_t n);

  // The layer whose storage `layer` uses (itself, or its donor).
  int owner(int layer) const;
  KvView view(int seq, int layer) const;
  bool is_f32() const { return type_ == KvCacheType::kF32; }
  KvCacheType type() const { return type_; }
  // Whether the type stores 32-element blocks (head sizes must be multiples of 32).
  static bool is_blocked(KvCacheType t) {
    return t == KvCacheType::kQ8_0 || t == KvCacheType::kQ4_0;
  }
  // Writes one position's K and V rows ([n_kv_heads * head_dim] f32 each) in the cache's
  // format. The position must be reserved (global) or within the ring's reach (sliding).
  void store(int seq, int layer, int64_t pos, const float* k_row, const float* v_row);
  // Row of one position (tests and tools), in the cache's type.
  void* k_row(int seq, int layer, int64_t pos);
  void* v_row(int seq, int layer, int64_t pos);

  // Sparse routing: its options, and the key summaries of one KV head of one sequence's
  // layer (global layers of a cache with sparse.enabled only).
  const SparseAttentionOptions& sparse() const { return sparse_; }
  // The routing one sequence's queries use: the cache's options unless set_routing changed
  // them. set_routing may switch routing off, or change the budget, the start and the
  // recent pages between steps (the same K/V serve both: eval compares dense and sparse
  // answers over one prefill); routing on needs a cache that keeps summaries
  // (sparse.enabled), with its page size. Prompt routing must stay as the cache's.
  const SparseAttentionOptions& routing(int seq) const { return get(seq).routing; }
  Status set_routing(int seq, const SparseAttentionOptions& o);
  BlockSummaries summaries(int seq, int layer, int kv_head) const;
  // Brings the summaries of the pages holding positions [from, to) up to date with the
  // rows written there (a page's first position starts its summary afresh). One sequence
  // and layer per call; calls for distinct sequences may run concurrently.
  void summarize(int seq, int layer, int64_t from, int64_t to);

  // Bytes of K/V the sequences hold: their rings plus the global blocks in use (each shared
  // block once).
  size_t bytes() const;
  // Bytes of one global block over all owning global layers, and of one sequence's rings.
  size_t block_bytes() const { return block_bytes_; }
  size_t ring_bytes_per_seq() const { return ring_bytes_; }
  int block_tokens() const { return blocks_.block_tokens(); }
  KvBlockStats block_stats() const { return blocks_.stats(); }
  int64_t free_blocks() const { return blocks_.free_blocks(); }

 private:
  struct Seq {
    int64_t length = 0;
    SparseAttentionOptions routing;
    std::vector<std::vector<uint8_t>> ring;  // per layer: K then V (sliding owners only)
  };
  struct Pool;  // one owning global layer's blocks (reserved address space)
  Seq& get(int seq);
  const Seq& get(int seq) const;
  size_t row_bytes(int layer) const;
  size_t page_values(int layer) const;     // per page: n_kv_heads x (min, max) x head_dim
  size_t summary_values(int layer) const;  // per block: its pages' summaries (f16 each)
  uint8_t* row_ptr(int seq, int layer, int64_t pos, bool value);

  std::vector<KvLayerGeometry> layers_;
  std::vector<int64_t> cap_;
  std::vector<int> pool_of_;  // per layer: index into pools_ (owning global layers), else -1
  std::vector<std::unique_ptr<Pool>> pools_;
  int64_t n_ctx_;
  int64_t max_chunk_;
  KvCacheType type_ = KvCacheType::kF16;
  int block_shift_ = 8;
  int page_shift_ = 5;  // sparse routing's selection pages
  size_t block_bytes_ = 0;
  size_t ring_bytes_ = 0;
  SparseAttentionOptions sparse_;
  KvBlockManager blocks_;
  std::map<int, Seq> seqs_;
};

}  // namespace g4
