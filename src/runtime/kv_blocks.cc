#include "runtime/kv_blocks.h"

#include <algorithm>

namespace g4 {

KvBlockManager::KvBlockManager(int block_tokens, int64_t n_blocks)
    : block_tokens_(std::max(1, block_tokens)), refs_(size_t(std::max<int64_t>(0, n_blocks)), 0) {
  free_.reserve(refs_.size());
  for (int64_t b = int64_t(refs_.size()) - 1; b >= 0; --b) free_.push_back(int32_t(b));
}

Status KvBlockManager::add_sequence(int seq) {
  if (seqs_.count(seq)) return Status::error("sequence " + std::to_string(seq) + " exists");
  seqs_[seq].order = next_order_++;
  return Status();
}

void KvBlockManager::remove_sequence(int seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  for (int32_t b : it->second.blocks) drop(b);
  seqs_.erase(it);
}

int64_t KvBlockManager::length(int seq) const {
  auto it = seqs_.find(seq);
  return it == seqs_.end() ? 0 : it->second.len;
}

const std::vector<int32_t>& KvBlockManager::table(int seq) const {
  static const std::vector<int32_t> kNone;
  auto it = seqs_.find(seq);
  return it == seqs_.end() ? kNone : it->second.blocks;
}

int32_t KvBlockManager::take() {
  const int32_t b = free_.back();
  free_.pop_back();
  refs_[size_t(b)] = 1;
  return b;
}

void KvBlockManager::drop(int32_t b) {
  if (--refs_[size_t(b)] == 0) free_.push_back(b);
}

Status KvBlockManager::fork(int src, int dst, int64_t n) {
  auto s = seqs_.find(src);
  if (s == seqs_.end()) return Status::error("fork: no sequence " + std::to_string(src));
  if (src == dst) return Status::error("fork: a sequence cannot fork into itself");
  if (n < 0 || n > s->second.len)
    return Status::error("fork: " + std::to_string(n) + " positions, the source holds " +
                         std::to_string(s->second.len));
  auto d = seqs_.find(dst);
  if (d != seqs_.end() && d->second.len > 0)
    return Status::error("fork: sequence " + std::to_string(dst) + " is not empty");
  if (d == seqs_.end()) {
    if (Status st = add_sequence(dst); !st.ok()) return st;
    d = seqs_.find(dst);
    s = seqs_.find(src);
  }
  Seq& to = d->second;
  const std::vector<int32_t>& from = s->second.blocks;
  to.blocks.assign(from.begin(), from.begin() + blocks_for(n));
  for (int32_t b : to.blocks) ++refs_[size_t(b)];
  to.len = n;
  return Status();
}

int64_t KvBlockManager::blocks_needed(int seq, int64_t len) const {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return blocks_for(len);
  const Seq& s = it->second;
  if (len <= s.len) return 0;
  int64_t need = blocks_for(len) - int64_t(s.blocks.size());
  // The first write lands in the last block when it is partly filled: shared, it is copied.
  if (s.len % block_tokens_ != 0 && refs_[size_t(s.blocks.back())] > 1) ++need;
  return need;
}

Result<std::vector<KvBlockCopy>> KvBlockManager::grow(int seq, int64_t len) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return Status::error("grow: no sequence " + std::to_string(seq));
  Seq& s = it->second;
  std::vector<KvBlockCopy> copies;
  if (len <= s.len) return copies;
  const int64_t need = blocks_needed(seq, len);
  if (need > int64_t(free_.size()))
    return Status::error("KV memory: " + std::to_string(need) + " blocks needed, " +
                         std::to_string(free_.size()) + " free");
  if (s.len % block_tokens_ != 0) {
    int32_t& last = s.blocks.back();
    if (refs_[size_t(last)] > 1) {
      const int32_t own = take();
      copies.push_back({last, own, s.len % block_tokens_});
      drop(last);
      last = own;
    }
  }
  while (int64_t(s.blocks.size()) < blocks_for(len)) s.blocks.push_back(take());
  s.len = len;
  return copies;
}

void KvBlockManager::truncate(int seq, int64_t len) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  Seq& s = it->second;
  if (len >= s.len) return;
  const size_t keep = size_t(blocks_for(std::max<int64_t>(0, len)));
  for (size_t i = keep; i < s.blocks.size(); ++i) drop(s.blocks[i]);
  s.blocks.resize(keep);
  s.len = std::max<int64_t>(0, len);
}

int KvBlockManager::victim(int keep) const {
  int best = -1;
  uint64_t order = 0;
  for (const auto& [id, s] : seqs_)
    if (id != keep && (best < 0 || s.order > order)) best = id, order = s.order;
  return best;
}

KvBlockStats KvBlockManager::stats() const {
  KvBlockStats st;
  st.total = int64_t(refs_.size());
  st.free = int64_t(free_.size());
  for (int r : refs_) {
    st.used += r > 0;
    st.shared += r > 1;
  }
  return st;
}

Status KvBlockManager::check() const {
  std::vector<int> count(refs_.size(), 0);
  for (const auto& [id, s] : seqs_) {
    if (int64_t(s.blocks.size()) != blocks_for(s.len))
      return Status::error("sequence " + std::to_string(id) + " holds " +
                           std::to_string(s.blocks.size()) + " blocks for " +
                           std::to_string(s.len) + " positions");
    for (int32_t b : s.blocks) {
      if (b < 0 || size_t(b) >= refs_.size()) return Status::error("block id out of range");
      ++count[size_t(b)];
    }
  }
  std::vector<int> in_free(refs_.size(), 0);
  for (int32_t b : free_) {
    if (b < 0 || size_t(b) >= refs_.size()) return Status::error("free block id out of range");
    if (++in_free[size_t(b)] > 1)
      return Status::error("block " + std::to_string(b) + " freed twice");
  }
  for (size_t b = 0; b < refs_.size(); ++b) {
    if (count[b] != refs_[b])
      return Status::error("block " + std::to_string(b) + ": count " + std::to_string(refs_[b]) +
                           ", listed " + std::to_string(count[b]) + " times");
    if ((refs_[b] == 0) != (in_free[b] == 1))
      return Status::error("block " + std::to_string(b) + " is neither used nor free");
  }
  return Status();
}

}  // namespace g4
