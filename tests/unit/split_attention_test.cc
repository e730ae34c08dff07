// Split attention (flash-decoding): a global layer's keys cut into chunks at fixed positions,
// each chunk attended on its own and merged in order (kernels/attention.h). The kernels' key
// ranges give a query block the bits of its tokens one by one, merged chunks give the unsplit
// attention to rounding, and in a model the chunk-parallel decode (one sequence: every thread
// reads part of its keys) gives the same logits, bit for bit, as the same tokens read as one
// prompt or decoded beside other sequences (each job running its chunks in order).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "core/fp16.h"
#include "g4/engine.h"
#include "kernels/attention.h"
#include "kernels/quant.h"
#include "kernels/quantize_ref.h"
#include "model/layer_ops.h"
#include "model/model.h"

namespace g4 {

namespace {

// Restores the split after a test that shrank it.
struct ChunkGuard {
  explicit ChunkGuard(int64_t keys) { set_attention_key_chunk(keys); }
  ~ChunkGuard() { set_attention_key_chunk(0); }
};

}  // namespace

TEST(SplitAttention, KeyRangesMergeToWholeAttention) {
  std::mt19937 rng(41);
  std::normal_distribution<float> nd(0.f, 1.f);
  struct Case {
    int H, Hkv, hd;
    bool paged;
    DType kv;  // the cache's type: F16, F32, Q8_0, Q4_0 or BF16
  };
  const int64_t cap = 640, R = 96;  // keys, and the test's chunk width
  for (const Case& c : {Case{8, 2, 256, true, DType::kF16}, Case{4, 1, 256, false, DType::kF16},
                        Case{6, 3, 40, false, DType::kF16}, Case{4, 2, 32, false, DType::kF32},
                        Case{8, 2, 256, true, DType::kQ8_0}, Case{4, 1, 64, false, DType::kQ4_0},
                        Case{6, 2, 32, true, DType::kBF16}, Case{4, 1, 256, true, DType::kF32}}) {
    SCOPED_TRACE(info(c.kv).name);
    for (float softcap : {0.f, 50.f}) {
      AttentionArgs a{c.H, c.Hkv, c.hd, cap, 0, softcap, c.kv == DType::kF32};
      a.kv_q8 = c.kv == DType::kQ8_0;
      a.kv_q4 = c.kv == DType::kQ4_0;
      a.kv_bf16 = c.kv == DType::kBF16;
      std::vector<int32_t> table;
      if (c.paged) {  // 16-position blocks, scattered
        for (int b = 0; b < int(cap / 16); ++b) table.push_back(int32_t((b * 7) % (cap / 16)));
        a.blocks = table.data();
        a.block_shift = 4;
      }
      // Rows of Hkv heads of hd values, in the cache's type (quantize_row for the block types).
      const size_t head_bytes = row_bytes(c.kv, c.hd), rows = size_t(cap) * size_t(c.Hkv);
      std::vector<uint8_t> kc(rows * head_bytes), vc(rows * head_bytes);
      std::vector<float> x(static_cast<size_t>(c.hd));
      for (size_t r = 0; r < rows; ++r) {
        for (auto* cache : {&kc, &vc}) {
          for (auto& e : x) e = nd(rng);
          quantize_row(c.kv, x.data(), cache->data() + r * head_bytes, c.hd);
        }
      }
      const void* k = kc.data();
      const void* v = vc.data();
      // Blocks of 13 tokens, and one token (a decode: the block path for the widened caches).
      for (const int nq : {13, 1}) {
        const size_t qd = size_t(c.H) * size_t(c.hd);
        std::vector<float> q(size_t(nq) * qd);
        for (auto& x : q) x = nd(rng) * 0.2f;
        std::vector<float> sc(attention_split_scratch_floats(a, nq, cap));
        for (int64_t p0 : {int64_t(0), int64_t(90), int64_t(cap - nq)}) {
          const int64_t chunks = (p0 + nq - 1) / R + 1;
          std::vector<float> whole(q.size()), tok(q.size()), blk(q.size()), part(q.size());
          std::vector<float> st_tok(size_t(nq) * size_t(c.H) * 2), st_blk(st_tok.size()),
              st_part(st_tok.size());
          for (int i = 0; i < nq; ++i)
            attend_group(a, q.data() + size_t(i) * qd, k, v, p0 + i, 0, c.H,
                         whole.data() + size_t(i) * qd, sc.data());
          // Token by token, then the block, chunk by chunk (chunk 0 into the output).
          for (int64_t ch = 0; ch < chunks; ++ch) {
            AttentionArgs ac = a;
            ac.key_lo = ch * R;
            ac.key_hi = ac.key_lo + R;
            for (int i = 0; i < nq; ++i) {
              float* o = (ch == 0 ? tok.data() : part.data()) + size_t(i) * qd;
              float* st = (ch == 0 ? st_tok.data() : st_part.data()) + 2 * size_t(i) * size_t(c.H);
              attend_group(ac, q.data() + size_t(i) * qd, k, v, p0 + i, 0, c.H, o, sc.data(), st);
              if (ch == 0) continue;
              for (int h = 0; h < c.H; ++h)
                attention_merge(tok.data() + size_t(i) * qd + size_t(h) * size_t(c.hd),
                                st_tok.data() + 2 * (size_t(i) * size_t(c.H) + size_t(h)),
                                o + size_t(h) * size_t(c.hd), st + 2 * size_t(h), c.hd);
            }
            float* o = ch == 0 ? blk.data() : part.data();
            float* st = ch == 0 ? st_blk.data() : st_part.data();
            const int group = c.H / c.Hkv;
            for (int h0 = 0; h0 < c.H; h0 += group)
              attend_block(ac, q.data(), qd, p0, nq, k, v, h0, h0 + group, o, qd, sc.data(), st);
            if (ch == 0) continue;
            for (int i = 0; i < nq; ++i)
              for (int h = 0; h < c.H; ++h) {
                const size_t r = size_t(i) * size_t(c.H) + size_t(h);
                attention_merge(blk.data() + r * size_t(c.hd), st_blk.data() + 2 * r,
                                part.data() + r * size_t(c.hd), st_part.data() + 2 * r, c.hd);
              }
          }
          ASSERT_EQ(blk, tok) << "H " << c.H << " hd " << c.hd << " p0 " << p0 << " nq " << nq;
          if (chunks == 1) ASSERT_EQ(tok, whole) << "one chunk is the unsplit result";
          float worst = 0;
          for (size_t i = 0; i < whole.size(); ++i)
            worst = std::max(worst, std::fabs(tok[i] - whole[i]));
          EXPECT_LT(worst, 1e-5f) << "H " << c.H << " hd " << c.hd << " p0 " << p0;
        }
      }
    }
  }
}

namespace {

std::unique_ptr<Engine> tiny_engine(bool sparse) {
  EngineOptions o;
  o.model_path = std::string(G4_SOURCE_DIR) + "/tests/golden/tiny/tiny_4b_like.gguf";
  o.n_threads = 2;
  o.n_ctx = 256;
  o.max_chunk = 256;
  if (sparse) {
    o.sparse.enabled = true;
    o.sparse.page_tokens = 4;
    o.sparse.budget_tokens = 40;
    o.sparse.min_context = 32;
    o.sparse.recent_pages = 1;
  }
  auto e = Engine::load(o);
  EXPECT_TRUE(e.ok()) << e.error();
  return e.ok() ? std::move(e).value() : nullptr;
}

// Logits of positions [from, ids.size()) of `copies` identical sequences: read as one prompt
// (copies 0: all positions in one step) or decoded a token per step after a prompt of `from`.
std::vector<std::vector<float>> run(Engine& e, const std::vector<int32_t>& ids, int from,
                                    int copies) {
  const Model& m = e.model();
  KvCacheOptions ko = e.kv_options();
  ko.pool_tokens = 4 * 256;  // room for three sequences
  KvCache kv(m.kv_geometry(), ko);
  std::vector<std::vector<float>> rows;
  StepOutput out;
  if (copies == 0) {
    EXPECT_TRUE(kv.add_sequence(0).ok());
    StepBatch sb;
    sb.seqs.push_back({0, std::span<const int32_t>(ids), 0, true, true});
    const Status st = m.forward(sb, kv, e.exec(), out);
    EXPECT_TRUE(st.ok()) << st.message();
    for (size_t r = size_t(from); r < ids.size(); ++r)
      rows.emplace_back(out.row(r), out.row(r) + out.vocab_size);
    return rows;
  }
  StepBatch sb;
  for (int s = 0; s < copies; ++s) {
    EXPECT_TRUE(kv.add_sequence(s).ok());
    sb.seqs.push_back({s, std::span<const int32_t>(ids.data(), size_t(from)), 0, false, true});
  }
  const Status st = m.forward(sb, kv, e.exec(), out);
  EXPECT_TRUE(st.ok()) << st.message();
  for (size_t p = size_t(from); p < ids.size(); ++p) {
    for (int s = 0; s < copies; ++s)
      sb.seqs[size_t(s)] = {s, std::span<const int32_t>(&ids[p], 1), int64_t(p), false, false};
    EXPECT_TRUE(m.forward(sb, kv, e.exec(), out).ok());
    for (int s = 1; s < copies; ++s)  // every copy gets the same logits
      EXPECT_TRUE(std::equal(out.row(0), out.row(0) + out.vocab_size, out.row(size_t(s))));
    rows.emplace_back(out.row(0), out.row(0) + out.vocab_size);
  }
  return rows;
}

}  // namespace

TEST(SplitAttention, ChunkParallelDecodeEqualsSerialChunks) {
  ChunkGuard chunk(16);  // tiny_4b_like: 256 positions, global layers split into 16-key chunks
  std::vector<int32_t> ids{2};
  uint64_t x = 99;
  while (ids.size() < 200) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    ids.push_back(int32_t(3 + (x >> 33) % 260));
  }
  const int from = 150;
  auto dense = tiny_engine(false);
  ASSERT_TRUE(dense);
  // One decoding sequence: chunk-parallel jobs; three: per-sequence jobs, chunks in order;
  // a prompt: query blocks, chunks in order. The counter shows which path each took.
  uint64_t wide = chunk_parallel_attention_calls();
  const auto one = run(*dense, ids, from, 1);
  EXPECT_GT(chunk_parallel_attention_calls(), wide) << "one sequence: the chunk-parallel path";
  wide = chunk_parallel_attention_calls();
  EXPECT_EQ(run(*dense, ids, from, 3), one);
  EXPECT_EQ(run(*dense, ids, from, 0), one);
  EXPECT_EQ(chunk_parallel_attention_calls(), wide) << "batches and prompts: serial chunks";
  // Against the unsplit attention: the same to rounding.
  set_attention_key_chunk(0);
  const auto unsplit = run(*dense, ids, from, 1);
  set_attention_key_chunk(16);
  float worst = 0;
  for (size_t r = 0; r < one.size(); ++r)
    for (size_t i = 0; i < one[r].size(); ++i)
      worst = std::max(worst, std::fabs(one[r][i] - unsplit[r][i]));
  EXPECT_LT(worst, 1e-4f);
  EXPECT_GT(worst, 0.f) << "the split really changed the order of the sums";
  // Sparse routing (decoding steps routed from position 32): the selection is made once per
  // token and KV head before the chunk jobs; the same logits either way.
  auto sparse = tiny_engine(true);
  ASSERT_TRUE(sparse);
  const auto routed = run(*sparse, ids, from, 1);
  EXPECT_EQ(run(*sparse, ids, from, 3), routed);
  EXPECT_NE(routed, one) << "routing chose fewer keys";
}

}  // namespace g4
