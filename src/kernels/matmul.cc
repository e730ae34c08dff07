#include "kernels/matmul.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/status.h"
#include "kernels/repack.h"

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

const PackedKernels& packed_kernels(Isa isa) {
  static const PackedKernels vnni = packed_kernels_avx512(), avx2 = packed_kernels_avx2(), none{};
  if (isa == Isa::kAvx512 && vnni.prepare != nullptr) return vnni;
  if (isa != Isa::kScalar && avx2.prepare != nullptr) return avx2;
  return none;
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

namespace {

void matmul_exact(ThreadPool& pool, const WeightView& w, const float* x, int64_t n_tokens, float* y,
                  MatmulScratch& scratch, Isa isa) {
  // f32 activations: each thread dequantises one weight row at a time into its own
  // buffer (never the whole matrix) and takes f32 dot products with every token.
  const size_t nth = size_t(pool.size());
  if (scratch.rows.size() < nth * size_t(w.in)) scratch.rows.resize(nth * size_t(w.in));
  const VecDotFn dot32 = vec_dot_for(DType::kF32, isa);
  pool.parallel_for(size_t(w.out), 16, [&](size_t b, size_t e, int ti) {
    float* row = scratch.rows.data() + size_t(ti) * size_t(w.in);
    for (size_t r = b; r < e; ++r) {
      dequantize_row(w.type, w.row(int64_t(r)), row, w.in);  // the file's rows (re-faulted)
      for (int64_t t = 0; t < n_tokens; ++t) {
        y[size_t(t) * size_t(w.out) + r] = dot32(w.in, row, x + size_t(t) * size_t(w.in));
      }
    }
  });
}

// Rows [b, e) of y = W x for every token, from prepared activation rows (arow bytes each).
// Rows in tiles of 16 so a tile stays in L1 while the tokens stream past it; tokens in
// eights and fours so each weight block is unpacked once per eight or four tokens. Every
// token's value comes out of the same per-token arithmetic whatever the tile.
constexpr size_t kTile = 16;
void compute_rows(const KernelSet& ks, const WeightView& w, const uint8_t* acts, size_t arow,
                  int64_t n_tokens, float* y, size_t b, size_t e) {
  const VecDotFn dot = ks.dot1;
  const VecDot4Fn dot4 = ks.dot4, dot8 = ks.dot8;
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
}

// Rows [b, e) (multiples of 16) of y = W x from R16-packed weights: per 16-row group, the
// tokens in eights, fours and ones; a token's values are the same for every tile width.
void compute_packed(const PackedKernels& pk, const WeightView& w, const uint8_t* acts, size_t arow,
                    int64_t n_tokens, float* y, size_t b, size_t e) {
  const size_t gbytes = packed_group_bytes(w.type, w.in), out = size_t(w.out);
  const PackKind kind = pack_kind(w.type);
  const PackedGroupFn* fn = pk.group[int(kind) - 1];
  for (size_t r0 = b; r0 < e; r0 += kPackRows) {
    const uint8_t* g = w.packed + (r0 / kPackRows) * gbytes;
    int64_t t = 0;
    const void* a[8];
    for (; t + 8 <= n_tokens; t += 8) {
      for (int k = 0; k < 8; ++k) a[k] = acts + size_t(t + k) * arow;
      fn[2](w.in, g, a, y + size_t(t) * out + r0, out);
    }
    for (; t + 4 <= n_tokens; t += 4) {
      for (int k = 0; k < 4; ++k) a[k] = acts + size_t(t + k) * arow;
      fn[1](w.in, g, a, y + size_t(t) * out + r0, out);
    }
    for (; t < n_tokens; ++t) {
      a[0] = acts + size_t(t) * arow;
      fn[0](w.in, g, a, y + size_t(t) * out + r0, out);
    }
  }
}

// One output's kernels: the packed ones when its weight has an R16 copy and the CPU runs them.
struct OutKernels {
  KernelSet ks;
  bool packed = false;
  void (*prepare)(const float*, void*, int64_t) = nullptr;
  size_t (*act_bytes)(int64_t) = nullptr;
};

void rows_of(const OutKernels& k, const PackedKernels& pk, const WeightView& w, const uint8_t* acts,
             size_t arow, int64_t n_tokens, float* y, size_t b, size_t e) {
  if (k.packed) {
    compute_packed(pk, w, acts, arow, n_tokens, y, b, e);
  } else {
    compute_rows(k.ks, w, acts, arow, n_tokens, y, b, e);
  }
}

}  // namespace

void matmul(ThreadPool& pool, const WeightView& w, const float* x, int64_t n_tokens, float* y,
            MatmulScratch& scratch, Isa isa, bool exact) {
  MatmulOut o{&w, y};
  matmul_multi(pool, &o, 1, x, n_tokens, scratch, isa, exact);
}

void matmul_multi(ThreadPool& pool, const MatmulOut* outs, int count, const float* x,
                  int64_t n_tokens, MatmulScratch& scratch, Isa isa, bool exact,
                  const RowEpilogue* epilogue) {
  G4_CHECK(count >= 1 && count <= kMaxMatmulOuts);
  const int64_t in = outs[0].w->in;
  for (int i = 0; i < count; ++i) G4_CHECK(outs[i].w->in == in);
  if (epilogue != nullptr) {
    for (int i = 0; i < count; ++i) G4_CHECK(outs[i].w->out == outs[0].w->out);
  }
  if (exact) {
    for (int i = 0; i < count; ++i)
      matmul_exact(pool, *outs[i].w, x, n_tokens, outs[i].y, scratch, isa);
    if (epilogue != nullptr) (*epilogue)(0, size_t(outs[0].w->out), 0);
    return;
  }
  // Packed (R16) outputs must start at a multiple of 16 in the concatenated row range.
  const PackedKernels& pk = packed_kernels(isa);
  OutKernels k[kMaxMatmulOuts];
  size_t start[kMaxMatmulOuts + 1];
  start[0] = 0;
  for (int i = 0; i < count; ++i) {
    const WeightView& w = *outs[i].w;
    start[i + 1] = start[i] + size_t(w.out);
    k[i].packed = w.packed != nullptr && pk.prepare != nullptr && start[i] % kPackRows == 0 &&
                  w.out % kPackRows == 0;
    if (k[i].packed && pack_float_kind(pack_kind(w.type))) {
      k[i].prepare = prepare_packed_f32;
      k[i].act_bytes = packed_act_bytes_f32;
    } else if (k[i].packed) {
      k[i].prepare = pk.prepare;
      k[i].act_bytes = pk.act_bytes;
    } else {
      k[i].ks = kernels_for(w.type, isa);
      G4_CHECK(k[i].ks.dot1 != nullptr);
      k[i].prepare = k[i].ks.prepare;
      k[i].act_bytes = k[i].ks.act_bytes;
    }
  }
  // One prepared activation buffer per distinct layout.
  int layout[kMaxMatmulOuts];
  size_t offset[kMaxMatmulOuts], arow[kMaxMatmulOuts];
  int n_layouts = 0;
  size_t total = 0;
  for (int i = 0; i < count; ++i) {
    layout[i] = -1;
    for (int j = 0; j < i; ++j)
      if (k[j].prepare == k[i].prepare) layout[i] = layout[j];
    if (layout[i] < 0) {
      layout[i] = n_layouts++;
      arow[layout[i]] = k[i].act_bytes(in);
      offset[layout[i]] = total;
      total += arow[layout[i]] * size_t(n_tokens);
    }
  }
  if (scratch.acts.size() < total) scratch.acts.resize(total);
  uint8_t* acts = scratch.acts.data();
  pool.parallel_for(size_t(n_tokens), 1, [&](size_t b, size_t e, int) {
    for (int i = 0; i < count; ++i) {
      bool first = true;
      for (int j = 0; j < i; ++j) first = first && layout[j] != layout[i];
      if (!first) continue;
      const int l = layout[i];
      for (size_t t = b; t < e; ++t)
        k[i].prepare(x + t * size_t(in), acts + offset[l] + t * arow[l], in);
    }
  });
  if (epilogue != nullptr) {
    // Same row range of every output on one thread, then the epilogue on that range.
    pool.parallel_for(size_t(outs[0].w->out), kTile, [&](size_t b, size_t e, int ti) {
      for (int i = 0; i < count; ++i) {
        const int l = layout[i];
        rows_of(k[i], pk, *outs[i].w, acts + offset[l], arow[l], n_tokens, outs[i].y, b, e);
      }
      (*epilogue)(b, e, ti);
    });
    return;
  }
  // The outputs' rows laid end to end, split statically across the threads.
  pool.parallel_for(start[count], kTile, [&](size_t b, size_t e, int) {
    for (int i = 0; i < count; ++i) {
      const size_t lo = std::max(b, start[i]), hi = std::min(e, start[i + 1]);
      if (lo >= hi) continue;
      const int l = layout[i];
      rows_of(k[i], pk, *outs[i].w, acts + offset[l], arow[l], n_tokens, outs[i].y, lo - start[i],
              hi - start[i]);
    }
  });
}

void get_row(const WeightView& w, int64_t r, float* dst) {
  G4_CHECK(r >= 0 && r < w.out);
  if (w.packed != nullptr) return dequantize_packed_row(w, r, dst);
  dequantize_row(w.type, w.row(r), dst, w.in);
}

}  // namespace g4
