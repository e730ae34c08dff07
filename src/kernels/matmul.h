// Matrix multiplication against stored (possibly quantised) weights.
//
// y[t][o] = sum_i W[o][i] * x[t][i] for t < n_tokens. W keeps its stored format: each
// activation row is converted once to the weight's vec_dot_type and every output row is a
// fused dequantise-and-dot (no dequantised copy of W exists). Output rows are split across
// the pool's threads statically.
#pragma once
#include <cstdint>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/dot_simd.h"
#include "kernels/dtype.h"

namespace g4 {

// A read-only view of a 2-D weight [out rows][in] in any supported type.
struct WeightView {
  DType type = DType::kF32;
  const uint8_t* data = nullptr;
  int64_t in = 0;   // ne[0]
  int64_t out = 0;  // ne[1]
  size_t row_bytes = 0;
  // Optional 16-row interleaved copy for the AVX-512 kernels (kernels/repack.h); data stays
  // the reference (exact mode, row lookups).
  const uint8_t* packed = nullptr;
  const uint8_t* row(int64_t r) const { return data + size_t(r) * row_bytes; }
};

// Scratch for activation conversion; grows to its high-water mark and is then reused.
struct MatmulScratch {
  std::vector<uint8_t> acts;
  std::vector<float> rows;  // exact mode: one dequantised weight row per thread
};

// exact = false (default, fast): activations converted to the weight's vec_dot_type (int8
// blocks for quantised weights, as llama.cpp does). exact = true: f32 activations against
// weights dequantised row by row; slower, and free of activation-rounding noise.
void matmul(ThreadPool& pool, const WeightView& w, const float* x, int64_t n_tokens, float* y,
            MatmulScratch& scratch, Isa isa, bool exact = false);

// Several weights with the same input in one pass (q/k/v; gate/up): the activations are
// prepared once per distinct layout and all outputs' rows are split across the threads in one
// job, so the step pays one barrier instead of one per weight. Each output is bit-identical to
// a separate matmul. With an epilogue, all outputs must have the same row count; each thread
// computes the same row range [b, e) of every output and then calls epilogue(b, e) on it
// (GEGLU fused into the gate/up job without another barrier).
struct MatmulOut {
  const WeightView* w;
  float* y;
};
constexpr int kMaxMatmulOuts = 4;
using RowEpilogue = ThreadPool::RangeFn;  // called as (b, e, thread index)
void matmul_multi(ThreadPool& pool, const MatmulOut* outs, int count, const float* x,
                  int64_t n_tokens, MatmulScratch& scratch, Isa isa, bool exact,
                  const RowEpilogue* epilogue = nullptr);

// Row lookup (token embedding): dequantise row r of w into dst[w.in].
void get_row(const WeightView& w, int64_t r, float* dst);

}  // namespace g4
