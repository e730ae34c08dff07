// A ragged batch for one forward step: several sequences, each contributing a run of
// consecutive tokens at known positions. A CLI run is a batch of one; the server batches
// many sequences through the same call (ref: docs/ARCHITECTURE.md).
#pragma once
#include <cstdint>
#include <span>
#include <vector>

namespace g4 {

struct SeqStep {
  int seq_id = 0;
  std::span<const int32_t> tokens;  // appended at positions start_pos, start_pos + 1, ...
  int64_t start_pos = 0;
  bool all_logits = false;  // logits for every token (perplexity, parity) or only the last
  // Prompt tokens (read densely by sparse routing unless it routes prompts), whatever their
  // count; otherwise a one-token step is a decoding step. Routing then does not depend on how
  // a prompt was cut into chunks.
  bool prompt = false;
};

struct StepBatch {
  std::vector<SeqStep> seqs;
  int64_t n_tokens() const {
    int64_t n = 0;
    for (const auto& s : seqs) n += int64_t(s.tokens.size());
    return n;
  }
};

// Logits rows in batch order: for each SeqStep, either every token's row or the last one's.
struct StepOutput {
  int vocab_size = 0;
  std::vector<float> logits;       // [n_rows][vocab_size]
  std::vector<int32_t> row_seq;    // index into StepBatch::seqs for each row
  std::vector<int32_t> row_token;  // token index within that SeqStep
  const float* row(size_t r) const { return logits.data() + r * size_t(vocab_size); }
  size_t n_rows() const { return row_seq.size(); }
};

}  // namespace g4
