// Scalar reference quantisers: f32 rows -> F16, BF16, Q8_0, Q4_0, Q5_0, Q4_K, Q6_K blocks.
// They reproduce ggml's `quantize_row_*_ref` (no importance matrix), including the
// scale searches of the K-quants (make_qkx2_quants for Q4_K, make_qx_quants for Q6_K), so
// `g4 quantize` writes the same bytes llama-quantize would for the same f32 input.
// Bit-exactness is tested against libggml (tests/unit/quantize_ref_test.cc,
// fixtures from scripts/gen_quant_row_fixtures.py). ref: formats.md §2.3-2.4.
#pragma once
#include <cstdint>

#include "kernels/dtype.h"

namespace g4 {

// True for the types quantize_row can produce.
bool can_quantize(DType t);

// Quantise n floats (a multiple of the type's block size) into row_bytes(t, n) bytes at dst.
// Requires can_quantize(t).
void quantize_row(DType t, const float* x, void* dst, int64_t n);

}  // namespace g4
