// Per-ISA dot-product tables. A VecDotFn computes one weight row (type w) times one
// activation row in vec_dot_type(w), over n elements.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/quant.h"

namespace g4 {

using VecDotFn = float (*)(int64_t n, const void* wrow, const void* arow);

// Four activation rows at once: out[t] = dot(wrow, arows[t]), bit-identical to four VecDotFn
// calls (the per-token arithmetic is the same; only the weight unpacking is shared).
using VecDot4Fn = void (*)(int64_t n, const void* wrow, const void* const* arows, float* out);

enum class Isa { kScalar, kAvx2, kAvx512 };
const char* isa_name(Isa isa);

// One weight type's kernels on one ISA: how an f32 activation row is prepared (its layout is
// private to the ISA: Q8_0/Q8_K blocks for scalar and AVX2, a packed VNNI layout for AVX-512
// 32-element blocks) and dot products for 1, 4 and 8 tokens. For any N, a token's result is
// bit-identical to the 1-token kernel's (same per-token instruction sequence).
struct KernelSet {
  void (*prepare)(const float* x, void* dst, int64_t n) = nullptr;
  size_t (*act_bytes)(int64_t n) = nullptr;
  VecDotFn dot1 = nullptr;
  VecDot4Fn dot4 = nullptr;  // nullptr: loop over dot1
  VecDot4Fn dot8 = nullptr;  // eight rows of arows / out
};
KernelSet kernels_for(DType w, Isa isa);

// Kernels for R16-packed weights (kernels/repack.h), AVX-512 VNNI or AVX2: one 16-row group
// against N = 1, 4 or 8 prepared activation rows, out[t * ostride + r] for r < 16. Indexed by
// layout (PackKind - 1: kQ8, kKMin, kKTwo, kQ5, kQ4) and tile (0: 1 token, 1: 4, 2: 8).
using PackedGroupFn = void (*)(int64_t n, const uint8_t* group, const void* const* arows,
                               float* out, size_t ostride);
struct PackedKernels {
  void (*prepare)(const float* x, void* dst, int64_t n) = nullptr;
  size_t (*act_bytes)(int64_t n) = nullptr;
  PackedGroupFn group[7][3] = {};  // [PackKind - 1][tile of 1, 4, 8 tokens]
};
PackedKernels packed_kernels_avx512();  // all nullptr without AVX-512 VNNI
PackedKernels packed_kernels_avx2();    // all nullptr without AVX2+FMA+F16C
// The R16 kernels a matmul at `isa` runs: AVX-512 VNNI, else AVX2 (for kAvx2, and for kAvx512
// on a CPU without VNNI), else none (scalar). Every set gives packed_group_ref's bits.
const PackedKernels& packed_kernels(Isa isa);
KernelSet kernels_avx512(DType w);  // .dot1 == nullptr if the type has no AVX-512 kernel
bool cpu_has_avx512();

VecDotFn vec_dot_avx2(DType w);    // nullptr if the type has no AVX2 kernel
VecDot4Fn vec_dot4_avx2(DType w);  // nullptr if the type has no 4-row AVX2 kernel
bool cpu_has_avx2();

// The best kernel for w on this CPU, or the one for a forced ISA (tests compare them). Its
// activation row must come from kernels_for(w, isa).prepare (for scalar and AVX2 that is
// quantize_activation(vec_dot_type(w))).
VecDotFn vec_dot_for(DType w, Isa isa);
// AVX-512 where available, else AVX2, else scalar; G4_ISA=scalar|avx2|avx512 caps it (for
// benchmarks and tests of the slower paths).
Isa best_isa();

}  // namespace g4
