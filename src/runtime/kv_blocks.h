// Paged KV memory bookkeeping (issue 14's manager, model-free): a pool of fixed-size blocks
// for the global layers' K/V, per-sequence block tables that grow as sequences grow, prefix
// sharing by reference count with copy on write, admission by free blocks, and the choice of
// whom to preempt when the pool runs dry. It holds no K/V itself: it hands out block ids, and
// the caller (the KV cache) owns the storage [n_blocks][block_tokens][...] and performs the
// copies it is told to. Not yet used by the forward (today's KvCache reserves n_ctx positions
// per sequence); this is the structure the paged cache will be built on.
//
// Invariants (checked by check()): a block's reference count equals the number of tables that
// list it; free blocks have count 0 and are listed once in the free list; a sequence of
// length L lists exactly ceil(L / block_tokens) blocks.
// Thread-safety: none (the engine thread owns it).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/status.h"

namespace g4 {

struct KvBlockStats {
  int64_t total = 0;
  int64_t free = 0;
  int64_t used = 0;    // blocks with a reference
  int64_t shared = 0;  // blocks referenced by more than one sequence
};

// A block the caller must copy before a sequence writes into it: the sequence's table now
// lists `to` where it listed `from` (which other sequences still use).
struct KvBlockCopy {
  int32_t from = -1;
  int32_t to = -1;
  int64_t tokens = 0;  // positions of `from` that hold data (the rest need no copy)
};

class KvBlockManager {
 public:
  KvBlockManager(int block_tokens, int64_t n_blocks);

  int block_tokens() const { return block_tokens_; }
  // Blocks needed for n tokens.
  int64_t blocks_for(int64_t n) const { return (n + block_tokens_ - 1) / block_tokens_; }

  Status add_sequence(int seq);
  // Releases the sequence's blocks (shared ones stay with their other users).
  void remove_sequence(int seq);
  bool has_sequence(int seq) const { return seqs_.count(seq) != 0; }
  int64_t length(int seq) const;
  const std::vector<int32_t>& table(int seq) const;

  // dst (new or empty) takes src's first n positions by reference: no K/V is copied until
  // one of them writes into a shared block (then grow() reports the copy).
  Status fork(int src, int dst, int64_t n);

  // Makes seq hold `len` positions (len >= its length), its next write starting at the old
  // length: allocates the blocks it lacks and, where the write would land in a block other
  // sequences share, a private copy (returned; the caller copies the data before writing).
  // On too few free blocks nothing changes and the error says how many were missing.
  Result<std::vector<KvBlockCopy>> grow(int seq, int64_t len);
  // Free blocks grow(seq, len) would take.
  int64_t blocks_needed(int seq, int64_t len) const;

  // Cuts seq back to len positions, releasing the blocks past it.
  void truncate(int seq, int64_t len);

  // Whether a new sequence of n positions fits in the free blocks, keeping `reserve` free.
  bool can_admit(int64_t n, int64_t reserve = 0) const {
    return blocks_for(n) + reserve <= int64_t(free_.size());
  }
  // The sequence to preempt when memory runs out: the youngest (last added), never `keep`;
  // -1 when there is none.
  int victim(int keep) const;
  int64_t free_blocks() const { return int64_t(free_.size()); }

  KvBlockStats stats() const;
  int refcount(int32_t block) const { return refs_[size_t(block)]; }
  // The invariants above; an error names the first one broken.
  Status check() const;

 private:
  struct Seq {
    int64_t len = 0;
    uint64_t order = 0;  // admission order (victim: the largest)
    std::vector<int32_t> blocks;
  };
  int32_t take();
  void drop(int32_t b);

  int block_tokens_;
  std::vector<int> refs_;
  std::vector<int32_t> free_;  // a stack: the most recently freed block is reused first
  std::map<int, Seq> seqs_;
  uint64_t next_order_ = 0;
};

}  // namespace g4
