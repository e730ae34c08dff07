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
// Group layouts (16 rows, nb = in / 32 blocks), 64-byte aligned. Quants q[8][64] of a block:
// for 4-quant chunk c, 16 rows x 4 quants, unsigned (vpdpbusd's unsigned operand).
//   kQ8 (Q8_0), kQ5 (Q5_0), kQ4 (Q4_0): blocks in pairs, each pair one 64-byte line of fp16
//        scales (uint16 d[16] of block 2i, then of block 2i+1) followed by the two blocks'
//        quants, so a group is read strictly front to back. (A separate scale area at the
//        group's head made every group a jump back that the hardware prefetcher does not
//        follow: one thread streamed 14.2 instead of 30.5 GB/s, `g4_stream_layout`.)
//        kQ8 quants are value + 128 (the size of the source). kQ5/kQ4 quants are 4 x 64 bytes
//        of nibbles (byte r*4+k of vector m: chunk 2m in the low nibble, chunk 2m+1 in the
//        high one) and, for kQ5, 8 x 64-bit masks of the fifth bits (bit r*4+k of mask c).
//        Unpacked values are value + 16 (kQ5) or value + 8 (kQ4); the source's 5.5 or 4.5
//        bits per weight stay. An odd last block has its pair's line to itself.
//   kKMin (Q4_K), kKTwo (Q6_K): per 256-column super-block a 320-byte head of the source's
//        own scales, then its 8 blocks' quants. Head: fp16 d[16]; kKMin fp16 dmin[16], uint8
//        sc[8][16] and m[8][16] (block s's 6-bit scale and min for the 16 rows); kKTwo 32
//        unused bytes and int8 sc[16][16] (the 16-element sub-blocks). The kernels form
//        S = d * sc and M = dmin * m in float, exactly (11 x 6 or 8 bits), so w = S q - M (kKMin)
//        and w = S (q - 32) (kKTwo, S of the block's half). Quants: 4 x 64 bytes of nibbles in
//        kQ4's order; kKTwo adds 2 x 64 bytes of high bits (vector h, byte r*4+k: chunk 4h+i's
//        two bits at bits 2i, 2i+1). 4.625 and 6.625 bits per weight (source 4.5, 6.5625); the
//        old float-scale, byte-quant layout read 6 and 10.
//   kF16, kBF16 (F16, BF16 weights, f32 activations): per 32-column block, for each column
//        the 16 rows' 16-bit values (32 bytes): the source's size. A row's dot product sums
//        per block four FMA chains (column c into chain c % 4), pairwise, into its total.
// Integer sums equal the stored format's products exactly; only the float accumulation
// order changes. K-quants take Q8_0-style activations here (a scale per 32 elements, finer
// than llama.cpp's Q8_K per 256). Activation layout: int8 qs[in] | int32 corr[nb] = -128 *
// sum(block qs) | float d[nb] | int32 h0[nb], h1[nb] = sums of the block's two 16-halves.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kernels/matmul.h"

namespace g4 {

constexpr int kPackRows = 16;

// Bytes of one 16-row group of an R16 matrix of type t with `in` columns.
size_t packed_group_bytes(DType t, int64_t in);

enum class PackKind { kNone, kQ8, kKMin, kKTwo, kQ5, kQ4, kF16, kBF16 };  // kernel index: kind - 1
constexpr int kPackKinds = 7;
// kF16/kBF16 take plain f32 activation rows (pack_float_kind), the others Q8_0-style ones.
constexpr bool pack_float_kind(PackKind k) {
  return k == PackKind::kF16 || k == PackKind::kBF16;
}
PackKind pack_kind(DType t);

// The 32-block kinds' pair layout: quant bytes per block, and the offsets in a group of
// block j's 16 fp16 scales and of its quants.
// K-quant kinds: head bytes per super-block, quant bytes per block, and the offsets in a
// group of super-block j / 8's head and of block j's quants.
constexpr size_t kKHeadBytes = 320;
constexpr size_t packed_k_quant_bytes(PackKind k) {
  return k == PackKind::kKMin ? 256 : 384;
}
constexpr size_t packed_k_super_bytes(PackKind k) {
  return kKHeadBytes + 8 * packed_k_quant_bytes(k);
}
constexpr size_t packed_k_head_offset(PackKind k, int64_t j) {
  return size_t(j / 8) * packed_k_super_bytes(k);
}
constexpr size_t packed_k_quants_offset(PackKind k, int64_t j) {
  return packed_k_head_offset(k, j) + kKHeadBytes + size_t(j % 8) * packed_k_quant_bytes(k);
}
constexpr size_t packed_q_block_bytes(PackKind k) {
  return k == PackKind::kQ8 ? 512 : k == PackKind::kQ5 ? 320 : 256;
}
constexpr size_t packed_scales_offset(PackKind k, int64_t j) {
  return size_t(j / 2) * (64 + 2 * packed_q_block_bytes(k)) + size_t(j % 2) * 32;
}
constexpr size_t packed_quants_offset(PackKind k, int64_t j) {
  return size_t(j / 2) * (64 + 2 * packed_q_block_bytes(k)) + 64 +
         size_t(j % 2) * packed_q_block_bytes(k);
}

// Software prefetch of R16 weights, issued once per block (or block pair) for `bytes` at p.
// Multi-token tiles spend ~100 cycles of VNNI work per 512-byte block, so the out-of-order
// window spans under two blocks and the hardware prefetcher does not run far enough ahead:
// an 8-token pass over the LM head from memory ran at 0.31-0.42 ns per block, row and token
// against 0.18 from L2; prefetching into L2 16 KiB ahead brings it to 0.19 (into L1, or 2 KiB
// ahead, gains little or loses: g4_kernel_bench --stream). One-token passes over the
// K-quants unpack ~50 instructions per 296-byte block, and one thread left alone reached only
// 46-57% (Q4_K) and 50-58% (Q6_K) of the read loop; prefetching into L1 8 KiB ahead gives
// 85-95% (2-16 KiB and L2 tried, g4_kernel_bench --stream-packed), and the 32-block kinds
// gain a little too (Q5_0 77 -> 88%). Prefetches past a matrix's end never fault.
template <int N>
inline void prefetch_weights(const uint8_t* p, int bytes) {
  constexpr int kAhead = N > 1 ? 16384 : 8192;
  for (int o = 0; o < bytes; o += 64) __builtin_prefetch(p + kAhead + o, 0, N > 1 ? 2 : 3);
}

// Whether w can be packed: Q8_0, Q5_0, Q4_0, Q4_K, Q6_K, F16 or BF16 with rows a multiple of
// 16 (and columns of 32, or 256 for the K-quants).
bool can_pack(const WeightView& w);

// Owner of packed and copied weights: one arena, reserved up front, on transparent huge
// pages where the kernel allows them. On these VMs a 4 KiB-page stream through 178 MB of LM
// head is bound by TLB misses (`g4_read_bandwidth`: 18.3 vs 30.6 GB/s on huge pages, one thread),
// so weights read every token belong in huge pages, not in the file's page-cache mapping.
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
  // Names of the matrices that got an R16 copy (for `g4 inspect`-style reports and tests).
  void note_packed(std::string name) { packed_.push_back(std::move(name)); }
  const std::vector<std::string>& packed() const { return packed_; }

 private:
  struct Block {
    uint8_t* p;
    size_t size;
  };
  std::vector<Block> blocks_;
  std::vector<std::string> packed_;
  size_t used_ = 0;  // in the last block
  size_t bytes_ = 0;
};

// Packs w (can_pack(w) must hold) into store and sets w.packed. Threads: 0 = hardware.
// consumed(src, bytes), if given, is called as each slice of the source rows has been read
// (the loader hands those mapped pages back, so peak RSS never holds both copies in full).
void pack_weight(WeightView& w, PackedStore& store, int n_threads = 0,
                 const std::function<void(const uint8_t*, size_t)>& consumed = {});
// Bytes pack_weight takes from the store for w.
size_t packed_bytes(const WeightView& w);

// Row r of a packed matrix as floats: the same values dequantize_row gives for the stored
// row (row lookups then never touch the source mapping again).
void dequantize_packed_row(const WeightView& w, int64_t r, float* dst);

// A prepared activation row of n columns (layout in the header comment), as the kernels read
// it: qs as 4-quant chunks, then per block the correction, scale and half sums.
struct PackedActView {
  const int32_t* qs;
  const int32_t* corr;
  const float* d;
  const int32_t* h0;
  const int32_t* h1;
  PackedActView() = default;
  PackedActView(const void* row, int64_t n) {
    const auto* p = static_cast<const uint8_t*>(row);
    const int64_t nb = n / 32;
    qs = reinterpret_cast<const int32_t*>(p);
    corr = reinterpret_cast<const int32_t*>(p + n);
    d = reinterpret_cast<const float*>(p + n + 4 * nb);
    h0 = reinterpret_cast<const int32_t*>(p + n + 8 * nb);
    h1 = h0 + nb;
  }
};
// Writes block i's tail of a prepared row of n columns: its quants' half sums s0 and s1, the
// correction -128 * (s0 + s1) and the scale d.
void store_packed_act_block(void* row, int64_t n, int64_t i, int32_t s0, int32_t s1, float d);

// Scalar references of the R16 arithmetic (tests compare the AVX-512 kernels bit for bit).
// The float kinds' activations: the f32 row itself.
size_t packed_act_bytes(int64_t n);
size_t packed_act_bytes_f32(int64_t n);
void prepare_packed_f32(const float* x, void* dst, int64_t n);
void prepare_packed_ref(const float* x, void* dst, int64_t n);
// out[r] for the group's 16 rows of a type-t matrix, one activation row.
void packed_group_ref(DType t, int64_t n, const uint8_t* group, const void* act,
                      float out[kPackRows]);

}  // namespace g4
