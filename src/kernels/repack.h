// Row-interleaved ("R16") copies of 32-element block weights for the AVX-512 VNNI kernels.
//
// The stored layouts keep each row's blocks together, so a one-row dot product must multiply
// every block's integer sum by that block's scale one row at a time and reduce horizontally
// at the end: for the 262144 x 640 tied LM head of Gemma 3 270M that bookkeeping, not memory,
// bounded decode. An R16 matrix holds 16 rows side by side per block instead: one 64-byte
// load gives the same 4 quants of 16 rows, `vpdpbusd` against 4 broadcast activation bytes
// adds them into 16 row lanes, and one convert/multiply/FMA per block applies 16 rows'
// scales at once. Outputs come out as 16 finished row values, with no horizontal sums.
//
// Group layout (16 rows, nb = in / 32 blocks), 64-byte aligned:
//   uint16 d[nb][16]     fp16 block scales, padded to a multiple of 64 bytes
//   uint8  q[nb][8][64]  for block j and 4-quant chunk c: 16 rows x 4 quants, each stored
//                        as value + 128 (unsigned, for vpdpbusd's unsigned operand)
// Q8_0 packs at the same size as its source; Q5_0 and Q4_0 widen to 8 bits per weight.
// Integer block sums equal the stored format's exactly; only the float accumulation order
// changes (one FMA per block per row, in block order). Activations use their own prepared
// layout: int8 qs[in] | int32 corr[nb] = -128 * sum(qs of the block) | float d[nb].
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/matmul.h"

namespace g4 {

constexpr int kPackRows = 16;

// Bytes of one 16-row group of an R16 matrix with `in` columns.
size_t packed_group_bytes(int64_t in);
// Offset of the quants inside a group (the padded scale area).
size_t packed_scale_bytes(int64_t in);

// Whether w can be packed: Q8_0, Q5_0 or Q4_0 with rows a multiple of 16.
bool can_pack(const WeightView& w);

// Owner of packed and copied weights: one arena, reserved up front, on transparent huge
// pages where the kernel allows them. On these VMs a 4 KiB-page stream through 178 MB of LM
// head is bound by TLB misses (measured 16 GB/s vs 29 GB/s on huge pages, one thread), so
// weights read every token belong in huge pages, not in the file's page-cache mapping.
class PackedStore {
 public:
  PackedStore() = default;
  explicit PackedStore(size_t capacity);
  ~PackedStore();
  PackedStore(const PackedStore&) = delete;
  PackedStore& operator=(const PackedStore&) = delete;
  // 64-byte aligned; the arena grows by separate blocks once the capacity is used up.
  uint8_t* alloc(size_t bytes);
  size_t bytes() const { return bytes_; }

 private:
  struct Block {
    uint8_t* p;
    size_t size;
  };
  std::vector<Block> blocks_;
  size_t used_ = 0;  // in the last block
  size_t bytes_ = 0;
};

// Packs w (can_pack(w) must hold) into store and sets w.packed. Threads: 0 = hardware.
void pack_weight(WeightView& w, PackedStore& store, int n_threads = 0);
// Bytes pack_weight takes from the store for w.
size_t packed_bytes(const WeightView& w);

// Scalar references of the R16 arithmetic (tests compare the AVX-512 kernels bit for bit).
size_t packed_act_bytes(int64_t n);
void prepare_packed_ref(const float* x, void* dst, int64_t n);
// out[r] for the group's 16 rows, one activation row.
void packed_group_ref(int64_t n, const uint8_t* group, const void* act, float out[kPackRows]);

}  // namespace g4
