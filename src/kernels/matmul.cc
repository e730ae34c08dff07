#include "kernels/matmul.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/status.h"

namespace g4 {

const char* isa_name(Isa isa) {
  return isa == Isa::kAvx512 ? "avx512" : isa == Isa::kAvx2 ? "avx2" : "scalar";
}

Isa best_isa() {
  static const Isa isa = [] {
    Isa best = cpu_has_avx512() ? Isa::kAvx512 : cpu_has_avx2() ? Isa::kAvx2 : Isa::kScalar;
    const char* cap = std::getenv("G4_ISA");
    if (cap != nullptr && std::strcmp(cap, "scalar") == 0) best = Isa::kScalar;
    if (cap != nullptr && std::strcmp(cap, "avx2") == 0 && best == Isa::kAvx512) best = Isa::kAvx2;
    return best;
  }();
  return isa;
}

namespace {
template <DType W>
float ref_dot(int64_t n, const void* w, const void* a) {
  return vec_dot_ref(W, n, w, a);
}
}  // namespace

VecDotFn vec_dot_for(DType w, Isa isa) {
  if (isa == Isa::kAvx512) {
    if (VecDotFn f = kernels_avx512(w).dot1) return f;
    isa = Isa::kAvx2;
  }
  if (isa == Isa::kAvx2) {
    if (VecDotFn f = vec_dot_avx2(w)) return f;
  }
  switch (w) {
    case DType::kF32:
      return ref_dot<DType::kF32>;
    case DType::kF16:
      return ref_dot<DType::kF16>;
    case DType::kBF16:
      return ref_dot<DType::kBF16>;
    case DType::kQ4_0:
      return ref_dot<DType::kQ4_0>;
    case DType::kQ5_0:
      return ref_dot<DType::kQ5_0>;
    case DType::kQ8_0:
      return ref_dot<DType::kQ8_0>;
    case DType::kQ4_K:
      return ref_dot<DType::kQ4_K>;
    case DType::kQ6_K:
      return ref_dot<DType::kQ6_K>;
    default:
      return nullptr;
  }
}

namespace {
template <DType V>
void prepare_as(const float* x, void* dst, int64_t n) {
  quantize_activation(V, x, dst, n);
}
template <DType V>
size_t bytes_as(int64_t n) {
  return row_bytes(V, n);
}
}  // namespace

KernelSet kernels_for(DType w, Isa isa) {
  if (isa == Isa::kAvx512) {
    const KernelSet k = kernels_avx512(w);
    if (k.dot1 != nullptr) return k;
    isa = Isa::kAvx2;
  }
  KernelSet k;
  switch (vec_dot_type(w)) {
    case DType::kQ8_0:
      k.prepare = prepare_as<DType::kQ8_0>;
      k.act_bytes = bytes_as<DType::kQ8_0>;
      break;
    case DType::kQ8_K:
      k.prepare = prepare_as<DType::kQ8_K>;
      k.act_bytes = bytes_as<DType::kQ8_K>;
      break;
    default:
      k.prepare = prepare_as<DType::kF32>;
      k.act_bytes = bytes_as<DType::kF32>;
      break;
  }
  k.dot1 = vec_dot_for(w, isa);
  if (isa == Isa::kAvx2) k.dot4 = vec_dot4_avx2(w);
  return k;
}

void matmul(ThreadPool& pool, const WeightView& w, const float* x, int64_t n_tokens, float* y,
            MatmulScratch& scratch, Isa isa, bool exact) {
  if (exact) {
    // f32 activations: each thread dequantises one weight row at a time into its own
    // buffer (never the whole matrix) and takes f32 dot products with every token.
    const size_t nth = size_t(pool.size());
    if (scratch.rows.size() < nth * size_t(w.in)) scratch.rows.resize(nth * size_t(w.in));
    const VecDotFn dot32 = vec_dot_for(DType::kF32, isa);
    pool.parallel_for(size_t(w.out), 16, [&](size_t b, size_t e, int ti) {
      float* row = scratch.rows.data() + size_t(ti) * size_t(w.in);
      for (size_t r = b; r < e; ++r) {
        dequantize_row(w.type, w.row(int64_t(r)), row, w.in);
        for (int64_t t = 0; t < n_tokens; ++t) {
          y[size_t(t) * size_t(w.out) + r] = dot32(w.in, row, x + size_t(t) * size_t(w.in));
        }
      }
    });
    return;
  }
  const KernelSet ks = kernels_for(w.type, isa);
  G4_CHECK(ks.dot1 != nullptr);
  const size_t arow = ks.act_bytes(w.in);
  if (scratch.acts.size() < arow * size_t(n_tokens)) scratch.acts.resize(arow * size_t(n_tokens));
  uint8_t* acts = scratch.acts.data();
  pool.parallel_for(size_t(n_tokens), 1, [&](size_t b, size_t e, int) {
    for (size_t t = b; t < e; ++t) ks.prepare(x + t * size_t(w.in), acts + t * arow, w.in);
  });
  const VecDotFn dot = ks.dot1;
  const VecDot4Fn dot4 = ks.dot4, dot8 = ks.dot8;
  // Rows in tiles of 16 so a tile stays in L1 while the tokens stream past it; tokens in
  // eights and fours so each weight block is unpacked once per eight or four tokens.
  constexpr size_t kTile = 16;
  pool.parallel_for(size_t(w.out), kTile, [&](size_t b, size_t e, int) {
    for (size_t r0 = b; r0 < e; r0 += kTile) {
      const size_t r1 = std::min(e, r0 + kTile);
      int64_t t = 0;
      if (dot8 != nullptr) {
        for (; t + 8 <= n_tokens; t += 8) {
          const void* a8[8];
          for (int k = 0; k < 8; ++k) a8[k] = acts + size_t(t + k) * arow;
          for (size_t r = r0; r < r1; ++r) {
            float o[8];
            dot8(w.in, w.row(int64_t(r)), a8, o);
            for (int k = 0; k < 8; ++k) y[size_t(t + k) * size_t(w.out) + r] = o[k];
          }
        }
      }
      if (dot4 != nullptr) {
        for (; t + 4 <= n_tokens; t += 4) {
          const void* a4[4] = {acts + size_t(t) * arow, acts + size_t(t + 1) * arow,
                               acts + size_t(t + 2) * arow, acts + size_t(t + 3) * arow};
          for (size_t r = r0; r < r1; ++r) {
            float o[4];
            dot4(w.in, w.row(int64_t(r)), a4, o);
            for (int k = 0; k < 4; ++k) y[size_t(t + k) * size_t(w.out) + r] = o[k];
          }
        }
      }
      for (; t < n_tokens; ++t) {
        const uint8_t* a = acts + size_t(t) * arow;
        float* yt = y + size_t(t) * size_t(w.out);
        for (size_t r = r0; r < r1; ++r) yt[r] = dot(w.in, w.row(int64_t(r)), a);
      }
    }
  });
}

void get_row(const WeightView& w, int64_t r, float* dst) {
  G4_CHECK(r >= 0 && r < w.out);
  dequantize_row(w.type, w.row(r), dst, w.in);
}

}  // namespace g4
