#include "kernels/repack.h"

#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <thread>

#include "core/fp16.h"
#include "core/status.h"
#include "kernels/quant.h"

namespace g4 {

PackKind pack_kind(DType t) {
  switch (t) {
    case DType::kQ8_0:
      return PackKind::kQ8;
    case DType::kQ5_0:
      return PackKind::kQ5;
    case DType::kQ4_0:
      return PackKind::kQ4;
    case DType::kQ4_K:
      return PackKind::kKMin;
    case DType::kQ6_K:
      return PackKind::kKTwo;
    case DType::kF16:
      return PackKind::kF16;
    case DType::kBF16:
      return PackKind::kBF16;
    default:
      return PackKind::kNone;
  }
}

size_t packed_group_bytes(DType t, int64_t in) {
  const int64_t nb = in / kQK;
  const PackKind k = pack_kind(t);
  if (k == PackKind::kKMin || k == PackKind::kKTwo) return size_t(nb / 8) * packed_k_super_bytes(k);
  if (pack_float_kind(k)) return size_t(nb) * 1024;
  // Up to the last block's quants (an odd last block has no partner after it).
  return packed_quants_offset(k, nb - 1) + packed_q_block_bytes(k);
}

bool can_pack(const WeightView& w) {
  const PackKind k = pack_kind(w.type);
  const int64_t block = k == PackKind::kKMin || k == PackKind::kKTwo ? kQKK : kQK;
  return k != PackKind::kNone && w.data != nullptr && w.in > 0 && w.in % block == 0 && w.out > 0 &&
         w.out % kPackRows == 0;
}

namespace {
constexpr size_t kHuge = size_t(2) << 20;

uint8_t* map_block(size_t size) {
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  G4_CHECK(p != MAP_FAILED && "out of memory for packed weights");
#ifdef MADV_HUGEPAGE
  madvise(p, size, MADV_HUGEPAGE);
#endif
  return static_cast<uint8_t*>(p);
}
}  // namespace

PackedStore::PackedStore(size_t capacity) {
  if (capacity > 0) blocks_.push_back({map_block(capacity), capacity});
}

PackedStore::~PackedStore() {
  for (const Block& b : blocks_) munmap(b.p, b.size);
}

uint8_t* PackedStore::alloc(size_t bytes) {
  bytes = (bytes + 63) / 64 * 64;
  if (blocks_.empty() || used_ + bytes > blocks_.back().size) {
    const size_t size = std::max(kHuge, (bytes + kHuge - 1) / kHuge * kHuge);
    blocks_.push_back({map_block(size), size});
    used_ = 0;
  }
  uint8_t* p = blocks_.back().p + used_;
  used_ += bytes;
  bytes_ += bytes;
  return p;
}

namespace {

// Block j of row `src` as 32 signed values and its fp16 scale.
void block_values(DType t, const uint8_t* row, int64_t j, int8_t v[kQK], uint16_t& d) {
  switch (t) {
    case DType::kQ8_0: {
      const auto* b = reinterpret_cast<const BlockQ8_0*>(row) + j;
      std::memcpy(&d, &b->d, 2);
      std::memcpy(v, b->qs, kQK);
      return;
    }
    case DType::kQ5_0: {
      const auto* b = reinterpret_cast<const BlockQ5_0*>(row) + j;
      std::memcpy(&d, &b->d, 2);
      uint32_t qh;
      std::memcpy(&qh, b->qh, 4);
      for (int i = 0; i < 16; ++i) {
        const int lo = (b->qs[i] & 0xF) | int(((qh >> i) & 1u) << 4);
        const int hi = (b->qs[i] >> 4) | int(((qh >> (i + 16)) & 1u) << 4);
        v[i] = int8_t(lo - 16);
        v[i + 16] = int8_t(hi - 16);
      }
      return;
    }
    case DType::kQ4_0: {
      const auto* b = reinterpret_cast<const BlockQ4_0*>(row) + j;
      std::memcpy(&d, &b->d, 2);
      for (int i = 0; i < 16; ++i) {
        v[i] = int8_t((b->qs[i] & 0xF) - 8);
        v[i + 16] = int8_t((b->qs[i] >> 4) - 8);
      }
      return;
    }
    default:
      G4_CHECK(false && "pack: unsupported type");
  }
}

// 32-element block j of a K-quant row: unsigned quants, the super-block's fp16 d (and dmin),
// and the block's two integer scales (kKMin: scale, min; kKTwo: the two halves' scales).
struct KBlock {
  uint8_t v[kQK];
  uint16_t d, dmin;
  int a, b;
};
KBlock block_values_k(DType t, const uint8_t* row, int64_t j) {
  KBlock k{};
  const int64_t sb = j / 8, s = j % 8;
  if (t == DType::kQ4_K) {
    const auto* b = reinterpret_cast<const BlockQ4_K*>(row) + sb;
    std::memcpy(&k.d, &b->d, 2);
    std::memcpy(&k.dmin, &b->dmin, 2);
    uint8_t sc, m;
    get_scale_min_k4(int(s), b->scales, &sc, &m);
    k.a = sc;
    k.b = m;
    const uint8_t* q = b->qs + 32 * (s / 2);
    for (int l = 0; l < kQK; ++l) k.v[l] = uint8_t(s % 2 == 0 ? q[l] & 0xF : q[l] >> 4);
    return k;
  }
  const auto* b = reinterpret_cast<const BlockQ6_K*>(row) + sb;
  std::memcpy(&k.d, &b->d, 2);
  k.a = b->scales[2 * s];
  k.b = b->scales[2 * s + 1];
  for (int l = 0; l < kQK; ++l) {
    const int e = int(s) * kQK + l, h = e / 128, r = e % 128, g = r / 32, i = r % 32;
    const uint8_t lb = b->ql[64 * h + i + 32 * (g & 1)];
    const int lo = g < 2 ? (lb & 0xF) : (lb >> 4);
    const int hi = (b->qh[32 * h + i] >> (2 * g)) & 3;
    k.v[l] = uint8_t(lo | (hi << 4));
  }
  return k;
}

// Block j's two float scales for lane r, as the kernels form them from the head.
void k_scales(PackKind kind, const uint8_t* grp, int64_t j, int r, float& x, float& y) {
  const uint8_t* head = grp + packed_k_head_offset(kind, j);
  const int s = int(j % 8);
  uint16_t dh;
  std::memcpy(&dh, head + 2 * r, 2);
  const float d = fp16_to_fp32(dh);
  if (kind == PackKind::kKMin) {
    uint16_t mh;
    std::memcpy(&mh, head + 32 + 2 * r, 2);
    x = d * float(head[64 + 16 * s + r]);
    y = fp16_to_fp32(mh) * float(head[192 + 16 * s + r]);
  } else {
    x = d * float(int8_t(head[64 + 32 * s + r]));
    y = d * float(int8_t(head[64 + 32 * s + 16 + r]));
  }
}

void put_u(PackKind kind, uint8_t* blk, int c, int r, int k, int u);
int packed_u(PackKind kind, const uint8_t* blk, int c, int r, int k);

// K-quant quants: kQ4's nibbles; kKTwo's high two bits in the 128 bytes after them.
void put_k(PackKind kind, uint8_t* q, int c, int r, int k, int u) {
  put_u(PackKind::kQ4, q, c, r, k, u & 0xF);
  if (kind == PackKind::kKTwo)
    q[256 + (c / 4) * 64 + r * 4 + k] |= uint8_t((u >> 4) << (2 * (c % 4)));
}
int packed_k(PackKind kind, const uint8_t* q, int c, int r, int k) {
  const int lo = packed_u(PackKind::kQ4, q, c, r, k);
  if (kind == PackKind::kKMin) return lo;
  return lo | (((q[256 + (c / 4) * 64 + r * 4 + k] >> (2 * (c % 4))) & 3) << 4);
}

void pack_groups_k(const WeightView& w, uint8_t* dst, int64_t g0, int64_t g1) {
  const PackKind kind = pack_kind(w.type);
  const int64_t nb = w.in / kQK;
  const size_t gbytes = packed_group_bytes(w.type, w.in);
  for (int64_t g = g0; g < g1; ++g) {
    uint8_t* grp = dst + size_t(g) * gbytes;
    std::memset(grp, 0, gbytes);
    for (int r = 0; r < kPackRows; ++r) {
      const uint8_t* row = w.row(g * kPackRows + r);
      for (int64_t j = 0; j < nb; ++j) {
        const KBlock kb = block_values_k(w.type, row, j);
        uint8_t* head = grp + packed_k_head_offset(kind, j);
        const int s = int(j % 8);
        std::memcpy(head + 2 * r, &kb.d, 2);
        if (kind == PackKind::kKMin) {
          std::memcpy(head + 32 + 2 * r, &kb.dmin, 2);
          head[64 + 16 * s + r] = uint8_t(kb.a);
          head[192 + 16 * s + r] = uint8_t(kb.b);
        } else {
          head[64 + 32 * s + r] = uint8_t(int8_t(kb.a));
          head[64 + 32 * s + 16 + r] = uint8_t(int8_t(kb.b));
        }
        uint8_t* q = grp + packed_k_quants_offset(kind, j);
        for (int c = 0; c < 8; ++c)
          for (int k = 0; k < 4; ++k) put_k(kind, q, c, r, k, kb.v[c * 4 + k]);
      }
    }
  }
}

// Stores unsigned value u (the kernel's operand) of chunk c, lane r, byte k of a block.
void put_u(PackKind kind, uint8_t* blk, int c, int r, int k, int u) {
  const int i = r * 4 + k;
  if (kind == PackKind::kQ8) {
    blk[c * 64 + i] = uint8_t(u);
    return;
  }
  uint8_t& b = blk[(c / 2) * 64 + i];
  b = uint8_t(c % 2 == 0 ? (b & 0xF0) | (u & 0xF) : (b & 0x0F) | ((u & 0xF) << 4));
  if (kind == PackKind::kQ5 && (u & 16) != 0) blk[256 + c * 8 + i / 8] |= uint8_t(1u << (i % 8));
}

// The unsigned operand of chunk c, lane r, byte k of a 32-block kind's block, and its offset.
int packed_u(PackKind kind, const uint8_t* blk, int c, int r, int k) {
  const int i = r * 4 + k;
  if (kind == PackKind::kQ8) return blk[c * 64 + i];
  const uint8_t b = blk[(c / 2) * 64 + i];
  int u = c % 2 == 0 ? (b & 0xF) : (b >> 4);
  if (kind == PackKind::kQ5 && ((blk[256 + c * 8 + i / 8] >> (i % 8)) & 1) != 0) u += 16;
  return u;
}
int packed_offset(PackKind kind) {
  return kind == PackKind::kQ8 ? 128 : kind == PackKind::kQ5 ? 16 : 8;
}

// Float kinds: column c of row r at block c / 32, slot c % 32, lane r.
size_t float_offset(int64_t c, int r) {
  return size_t(c / 32) * 1024 + size_t(c % 32) * 32 + size_t(r) * 2;
}

void pack_groups_f(const WeightView& w, uint8_t* dst, int64_t g0, int64_t g1) {
  const size_t gbytes = packed_group_bytes(w.type, w.in);
  for (int64_t g = g0; g < g1; ++g) {
    uint8_t* grp = dst + size_t(g) * gbytes;
    for (int r = 0; r < kPackRows; ++r) {
      const uint8_t* row = w.row(g * kPackRows + r);
      for (int64_t c = 0; c < w.in; ++c) std::memcpy(grp + float_offset(c, r), row + 2 * c, 2);
    }
  }
}

float float_value(PackKind kind, const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return kind == PackKind::kF16 ? fp16_to_fp32(h) : bf16_to_fp32(h);
}

void pack_groups(const WeightView& w, uint8_t* dst, int64_t g0, int64_t g1) {
  const PackKind kind = pack_kind(w.type);
  if (kind == PackKind::kKMin || kind == PackKind::kKTwo) return pack_groups_k(w, dst, g0, g1);
  if (pack_float_kind(kind)) return pack_groups_f(w, dst, g0, g1);
  const int off = packed_offset(kind);
  const int64_t nb = w.in / kQK;
  const size_t gbytes = packed_group_bytes(w.type, w.in);
  int8_t v[kQK];
  for (int64_t g = g0; g < g1; ++g) {
    uint8_t* grp = dst + size_t(g) * gbytes;
    std::memset(grp, 0, gbytes);
    for (int r = 0; r < kPackRows; ++r) {
      const uint8_t* row = w.row(g * kPackRows + r);
      for (int64_t j = 0; j < nb; ++j) {
        uint16_t d;
        block_values(w.type, row, j, v, d);
        std::memcpy(grp + packed_scales_offset(kind, j) + 2 * size_t(r), &d, 2);
        uint8_t* q = grp + packed_quants_offset(kind, j);
        for (int c = 0; c < 8; ++c)
          for (int k = 0; k < 4; ++k) put_u(kind, q, c, r, k, v[c * 4 + k] + off);
      }
    }
  }
}

}  // namespace

size_t packed_bytes(const WeightView& w) {
  return size_t(w.out / kPackRows) * packed_group_bytes(w.type, w.in);
}

void pack_weight(WeightView& w, PackedStore& store, int n_threads,
                 const std::function<void(const uint8_t*, size_t)>& consumed) {
  G4_CHECK(can_pack(w));
  const int64_t groups = w.out / kPackRows;
  uint8_t* dst = store.alloc(packed_bytes(w));
  int nt = n_threads > 0 ? n_threads : int(std::max(1u, std::thread::hardware_concurrency()));
  nt = int(std::min<int64_t>(nt, std::max<int64_t>(1, groups / 256)));
  constexpr int64_t kSlice = 1024;  // groups per slice (16384 rows)
  for (int64_t s0 = 0; s0 < groups; s0 += kSlice) {
    const int64_t s1 = std::min(groups, s0 + kSlice);
    if (nt <= 1) {
      pack_groups(w, dst, s0, s1);
    } else {
      std::vector<std::thread> th;
      for (int i = 0; i < nt; ++i)
        th.emplace_back(pack_groups, std::cref(w), dst, s0 + (s1 - s0) * i / nt,
                        s0 + (s1 - s0) * (i + 1) / nt);
      for (auto& t : th) t.join();
    }
    if (consumed) {
      consumed(w.row(s0 * kPackRows), w.row_bytes * size_t((s1 - s0) * kPackRows));
    }
  }
  w.packed = dst;
}

void dequantize_packed_row(const WeightView& w, int64_t r, float* dst) {
  const int64_t nb = w.in / kQK, lane = r % kPackRows;
  const uint8_t* grp = w.packed + size_t(r / kPackRows) * packed_group_bytes(w.type, w.in);
  const PackKind kind = pack_kind(w.type);
  if (pack_float_kind(kind)) {
    for (int64_t c = 0; c < w.in; ++c) dst[c] = float_value(kind, grp + float_offset(c, int(lane)));
    return;
  }
  for (int64_t j = 0; j < nb; ++j, dst += kQK) {
    if (kind != PackKind::kKMin && kind != PackKind::kKTwo) {
      uint16_t dh;
      std::memcpy(&dh, grp + packed_scales_offset(kind, j) + 2 * size_t(lane), 2);
      const float d = fp16_to_fp32(dh);
      const uint8_t* blk = grp + packed_quants_offset(kind, j);
      const int off = packed_offset(kind);
      for (int c = 0; c < 8; ++c)
        for (int k = 0; k < 4; ++k)
          dst[c * 4 + k] = d * float(packed_u(kind, blk, c, int(lane), k) - off);
      continue;
    }
    const uint8_t* blk = grp + packed_k_quants_offset(kind, j);
    float x, y;
    k_scales(kind, grp, j, int(lane), x, y);
    for (int c = 0; c < 8; ++c) {
      for (int k = 0; k < 4; ++k) {
        const int v = packed_k(kind, blk, c, int(lane), k);
        if (kind == PackKind::kKMin) {
          dst[c * 4 + k] = x * float(v) - y;
        } else {
          dst[c * 4 + k] = (c < 4 ? x : y) * float(v - 32);
        }
      }
    }
  }
}

size_t packed_act_bytes_f32(int64_t n) {
  return size_t(n) * sizeof(float);
}

void prepare_packed_f32(const float* x, void* dst, int64_t n) {
  std::memcpy(dst, x, size_t(n) * sizeof(float));
}

size_t packed_act_bytes(int64_t n) {
  return size_t(n) + size_t(n / kQK) * 16;
}

void store_packed_act_block(void* row, int64_t n, int64_t i, int32_t s0, int32_t s1, float d) {
  auto* p = static_cast<uint8_t*>(row);
  const int64_t nb = n / kQK;
  const int32_t c = -128 * (s0 + s1);
  std::memcpy(p + n + 4 * i, &c, 4);
  std::memcpy(p + n + 4 * nb + 4 * i, &d, 4);
  std::memcpy(p + n + 8 * nb + 4 * i, &s0, 4);
  std::memcpy(p + n + 12 * nb + 4 * i, &s1, 4);
}

void prepare_packed_ref(const float* x, void* dst, int64_t n) {
  // The Q8_0 activation rule of quantize_activation, regrouped.
  const int64_t nb = n / kQK;
  auto* qs = static_cast<int8_t*>(dst);
  std::vector<BlockQ8_0> b(static_cast<size_t>(nb));
  quantize_activation(DType::kQ8_0, x, b.data(), n);
  for (int64_t j = 0; j < nb; ++j) {
    int32_t s[2] = {0, 0};
    for (int i = 0; i < kQK; ++i) {
      qs[j * kQK + i] = b[size_t(j)].qs[i];
      s[i / 16] += b[size_t(j)].qs[i];
    }
    store_packed_act_block(dst, n, j, s[0], s[1], fp16_to_fp32(b[size_t(j)].d));
  }
}

void packed_group_ref(DType t, int64_t n, const uint8_t* group, const void* act,
                      float out[kPackRows]) {
  const int64_t nb = n / kQK;
  if (pack_float_kind(pack_kind(t))) {
    const auto* x = static_cast<const float*>(act);
    for (int r = 0; r < kPackRows; ++r) {
      float sum = 0.f;
      for (int64_t b = 0; b < n; b += kQK) {  // per block: 4 chains, pairwise, then the total
        float acc[4] = {0.f, 0.f, 0.f, 0.f};
        for (int64_t c = b; c < b + kQK; ++c)
          acc[c % 4] =
              std::fma(float_value(pack_kind(t), group + float_offset(c, r)), x[c], acc[c % 4]);
        sum += (acc[0] + acc[1]) + (acc[2] + acc[3]);
      }
      out[r] = sum;
    }
    return;
  }
  const auto* base = static_cast<const uint8_t*>(act);
  const auto* qs = reinterpret_cast<const int8_t*>(base);
  auto i32 = [&](size_t off, int64_t j) {
    int32_t v;
    std::memcpy(&v, base + off + 4 * size_t(j), 4);
    return v;
  };
  auto f32 = [](const uint8_t* p) {
    float v;
    std::memcpy(&v, p, 4);
    return v;
  };
  const size_t o_corr = size_t(n), o_d = o_corr + 4 * size_t(nb), o_h0 = o_d + 4 * size_t(nb),
               o_h1 = o_h0 + 4 * size_t(nb);
  const PackKind kind = pack_kind(t);
  for (int r = 0; r < kPackRows; ++r) {
    float acc = 0.f;
    for (int64_t j = 0; j < nb; ++j) {
      const float da = f32(base + o_d + 4 * size_t(j));
      const bool k_quant = kind == PackKind::kKMin || kind == PackKind::kKTwo;
      const uint8_t* blk =
          k_quant ? group + packed_k_quants_offset(kind, j) : group + packed_quants_offset(kind, j);
      int32_t s[2] = {0, 0};
      for (int c = 0; c < 8; ++c)
        for (int k = 0; k < 4; ++k)
          s[c / 4] +=
              int32_t(k_quant ? packed_k(kind, blk, c, r, k) : packed_u(kind, blk, c, r, k)) *
              int32_t(qs[j * kQK + c * 4 + k]);
      if (!k_quant) {
        uint16_t dh;
        std::memcpy(&dh, group + packed_scales_offset(kind, j) + 2 * size_t(r), 2);
        // corr = -128 * sum(a); the offset-K kinds need -K * sum(a) = corr / (128 / K).
        const int32_t corr = i32(o_corr, j) / (128 / packed_offset(kind));
        const int32_t sum = (corr + s[0]) + s[1];
        acc = std::fma(float(sum), fp16_to_fp32(dh) * da, acc);
      } else {
        float x, y;
        k_scales(kind, group, j, r, x, y);
        const int32_t h0 = i32(o_h0, j), h1 = i32(o_h1, j);
        if (kind == PackKind::kKMin) {
          acc = std::fma(float(s[0] + s[1]), x * da, acc);
          acc = std::fma(-y, da * float(h0 + h1), acc);
        } else {
          acc = std::fma(float(-32 * h0 + s[0]), x * da, acc);
          acc = std::fma(float(-32 * h1 + s[1]), y * da, acc);
        }
      }
    }
    out[r] = acc;
  }
}

}  // namespace g4
