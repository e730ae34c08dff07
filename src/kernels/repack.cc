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

size_t packed_scale_bytes(int64_t in) {
  const size_t nb = size_t(in / kQK);
  return (nb * 2 * kPackRows + 63) / 64 * 64;
}

size_t packed_group_bytes(int64_t in) {
  return packed_scale_bytes(in) + size_t(in / kQK) * kQK * kPackRows;
}

bool can_pack(const WeightView& w) {
  const bool type_ok = w.type == DType::kQ8_0 || w.type == DType::kQ5_0 || w.type == DType::kQ4_0;
  return type_ok && w.data != nullptr && w.in > 0 && w.in % kQK == 0 && w.out > 0 &&
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

void pack_groups(const WeightView& w, uint8_t* dst, int64_t g0, int64_t g1) {
  const int64_t nb = w.in / kQK;
  const size_t gbytes = packed_group_bytes(w.in), sbytes = packed_scale_bytes(w.in);
  int8_t v[kQK];
  for (int64_t g = g0; g < g1; ++g) {
    uint8_t* grp = dst + size_t(g) * gbytes;
    std::memset(grp, 0, sbytes);
    auto* scales = reinterpret_cast<uint16_t*>(grp);
    uint8_t* q = grp + sbytes;
    for (int r = 0; r < kPackRows; ++r) {
      const uint8_t* row = w.row(g * kPackRows + r);
      for (int64_t j = 0; j < nb; ++j) {
        uint16_t d;
        block_values(w.type, row, j, v, d);
        scales[j * kPackRows + r] = d;
        for (int c = 0; c < 8; ++c)
          for (int k = 0; k < 4; ++k)
            q[size_t(j) * 512 + size_t(c) * 64 + size_t(r) * 4 + size_t(k)] =
                uint8_t(int(v[c * 4 + k]) + 128);
      }
    }
  }
}

}  // namespace

size_t packed_bytes(const WeightView& w) {
  return size_t(w.out / kPackRows) * packed_group_bytes(w.in);
}

void pack_weight(WeightView& w, PackedStore& store, int n_threads) {
  G4_CHECK(can_pack(w));
  const int64_t groups = w.out / kPackRows;
  uint8_t* dst = store.alloc(packed_bytes(w));
  int nt = n_threads > 0 ? n_threads : int(std::max(1u, std::thread::hardware_concurrency()));
  nt = int(std::min<int64_t>(nt, std::max<int64_t>(1, groups / 256)));
  if (nt <= 1) {
    pack_groups(w, dst, 0, groups);
  } else {
    std::vector<std::thread> th;
    for (int i = 0; i < nt; ++i)
      th.emplace_back(pack_groups, std::cref(w), dst, groups * i / nt, groups * (i + 1) / nt);
    for (auto& t : th) t.join();
  }
  w.packed = dst;
}

size_t packed_act_bytes(int64_t n) {
  return size_t(n) + size_t(n / kQK) * 8;
}

void prepare_packed_ref(const float* x, void* dst, int64_t n) {
  // The Q8_0 activation rule of quantize_activation, regrouped.
  const int64_t nb = n / kQK;
  auto* qs = static_cast<int8_t*>(dst);
  auto* corr = reinterpret_cast<int32_t*>(static_cast<uint8_t*>(dst) + n);
  auto* d = reinterpret_cast<float*>(static_cast<uint8_t*>(dst) + n + 4 * nb);
  std::vector<BlockQ8_0> b(static_cast<size_t>(nb));
  quantize_activation(DType::kQ8_0, x, b.data(), n);
  for (int64_t j = 0; j < nb; ++j) {
    int32_t s = 0;
    for (int i = 0; i < kQK; ++i) {
      qs[j * kQK + i] = b[size_t(j)].qs[i];
      s += b[size_t(j)].qs[i];
    }
    const int32_t c = -128 * s;
    const float dj = fp16_to_fp32(b[size_t(j)].d);
    std::memcpy(corr + j, &c, 4);
    std::memcpy(d + j, &dj, 4);
  }
}

void packed_group_ref(int64_t n, const uint8_t* group, const void* act, float out[kPackRows]) {
  const int64_t nb = n / kQK;
  const auto* qs = static_cast<const int8_t*>(act);
  const auto* corr = reinterpret_cast<const int32_t*>(static_cast<const uint8_t*>(act) + n);
  const auto* da = reinterpret_cast<const float*>(static_cast<const uint8_t*>(act) + n + 4 * nb);
  const auto* scales = reinterpret_cast<const uint16_t*>(group);
  const uint8_t* q = group + packed_scale_bytes(n);
  for (int r = 0; r < kPackRows; ++r) {
    float acc = 0.f;
    for (int64_t j = 0; j < nb; ++j) {
      int32_t s = corr[j];
      for (int c = 0; c < 8; ++c)
        for (int k = 0; k < 4; ++k)
          s += int32_t(q[size_t(j) * 512 + size_t(c) * 64 + size_t(r) * 4 + size_t(k)]) *
               int32_t(qs[j * kQK + c * 4 + k]);
      const float dd = fp16_to_fp32(scales[j * kPackRows + r]) * da[j];
      acc = std::fma(float(s), dd, acc);
    }
    out[r] = acc;
  }
}

}  // namespace g4
