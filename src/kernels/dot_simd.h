// Per-ISA dot-product tables. A VecDotFn computes one weight row (type w) times one
// activation row in vec_dot_type(w), over n elements.
#pragma once
#include <cstdint>

#include "kernels/quant.h"

namespace g4 {

using VecDotFn = float (*)(int64_t n, const void* wrow, const void* arow);

// Four activation rows at once: out[t] = dot(wrow, arows[t]), bit-identical to four VecDotFn
// calls (the per-token arithmetic is the same; only the weight unpacking is shared).
using VecDot4Fn = void (*)(int64_t n, const void* wrow, const void* const* arows, float* out);

enum class Isa { kScalar, kAvx2 };
const char* isa_name(Isa isa);

VecDotFn vec_dot_avx2(DType w);    // nullptr if the type has no AVX2 kernel
VecDot4Fn vec_dot4_avx2(DType w);  // nullptr if the type has no 4-row AVX2 kernel
bool cpu_has_avx2();

// The best kernel for w on this CPU, or the one for a forced ISA (tests compare them).
VecDotFn vec_dot_for(DType w, Isa isa);
Isa best_isa();

}  // namespace g4
