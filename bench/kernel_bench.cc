// g4_kernel_bench: time per weight block of each dot kernel, per ISA and tile width.
//
//   build/release/g4_kernel_bench [--stream | --stream-packed [THREADS] | --softcap]
//
// Valgrind cannot run AVX-512 code, so this is the stable measurement for the AVX-512
// kernels on a shared machine: 64 random weight rows (L1/L2 resident) against 1, 4 or 8
// prepared activation rows, the minimum over 300 repetitions (preemption only ever adds
// time). --stream adds one pass over an LM-head-sized Q8_0 matrix (262144 x 640, 178 MB), which
// is bound by memory bandwidth instead. --stream-packed times one-token passes of one thread
// over ~190 MB R16 matrices of every packed quant type (2816 columns, 26B-A4B's width), each
// beside a plain read loop over the same bytes in the same run: the share of the read loop a
// one-thread decode kernel reaches. --softcap times Gemma 4's final logit soft-cap over one
// token's 262144 logits: a plain std::tanh loop (what the LM head ran before) against
// softcap_inplace (8 lanes), one thread, the minimum of 20 passes each.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "core/fp16.h"
#include "kernels/dot_simd.h"
#include "kernels/ops.h"
#include "kernels/quant.h"
#include "kernels/repack.h"

using namespace g4;

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Random blocks with small fp16 scales (valid values, no NaN/Inf).
std::vector<uint8_t> random_weights(DType t, int64_t n, int64_t rows, std::mt19937& rng) {
  std::vector<uint8_t> w(row_bytes(t, n) * size_t(rows));
  for (auto& b : w) b = uint8_t(rng());
  const size_t bb = size_t(info(t).block_bytes);
  const uint16_t h = fp32_to_fp16(0.01f);
  for (size_t i = 0; i < w.size() / bb; ++i) {
    uint8_t* blk = w.data() + i * bb;
    if (t == DType::kQ6_K) {
      std::memcpy(blk + 208, &h, 2);
    } else {
      std::memcpy(blk, &h, 2);
      if (t == DType::kQ4_K) std::memcpy(blk + 2, &h, 2);
    }
  }
  return w;
}

}  // namespace

// Plain AVX-512 read loop over p[0, n) (bench/read_bandwidth.cc's), for --stream-packed.
__attribute__((target("avx512f"))) long long read_loop(const uint8_t* p, size_t n) {
  __m512i a = _mm512_setzero_si512(), b = a;
  for (size_t i = 0; i + 128 <= n; i += 128) {
    a = _mm512_xor_si512(a, _mm512_load_si512(p + i));
    b = _mm512_xor_si512(b, _mm512_load_si512(p + i + 64));
  }
  return _mm512_reduce_add_epi64(_mm512_xor_si512(a, b));
}

// f(part) on `threads` threads (part = 0 .. threads-1), joined; seconds.
template <typename F>
double timed_on_threads(int threads, const F& f) {
  const double t0 = now();
  std::vector<std::thread> th;
  for (int p = 1; p < threads; ++p) th.emplace_back([&f, p] { f(p); });
  f(0);
  for (auto& x : th) x.join();
  return now() - t0;
}

// One-token R16 passes over a matrix far beyond the caches, against the read loop over the
// packed bytes, alternating, best of 5 each; with several threads each takes an even share
// of the 16-row groups (as the matmul splits a decode's rows).
int stream_packed(int threads) {
  std::printf("%d thread%s\n\n", threads, threads > 1 ? "s" : "");
  std::mt19937 rng(2);
  std::normal_distribution<float> nd;
  std::printf(
      "| R16 type | isa | MB | kernel GB/s | read loop GB/s | kernel / read loop |\n"
      "|---|---|---|---|---|---|\n");
  for (DType t : {DType::kQ8_0, DType::kQ5_0, DType::kQ4_0, DType::kQ4_K, DType::kQ6_K}) {
    const int64_t n = 2816;
    const int64_t rows = int64_t(190e6 / double(row_bytes(t, n))) / kPackRows * kPackRows;
    auto src = random_weights(t, n, rows, rng);
    WeightView v{t, src.data(), n, rows, row_bytes(t, n)};
    PackedStore store(packed_bytes(v));
    pack_weight(v, store);
    src.clear();
    src.shrink_to_fit();
    const size_t gb = packed_group_bytes(t, n), total = gb * size_t(rows / kPackRows);
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& e : x) e = nd(rng);
    for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {
      const PackedKernels& pk = packed_kernels(isa);
      if (pk.prepare == nullptr || !cpu_has_avx512()) continue;
      std::vector<uint8_t> act(pk.act_bytes(n) + 64);
      pk.prepare(x.data(), act.data(), n);
      const void* a[1] = {act.data()};
      std::vector<float> out(static_cast<size_t>(rows));
      const PackedGroupFn fn = pk.group[int(pack_kind(t)) - 1][0];
      double best = 1e9, best_read = 1e9;
      long long sink = 0;
      const int64_t groups = rows / kPackRows;
      std::vector<long long> sinks(static_cast<size_t>(threads));
      for (int rep = 0; rep < 5; ++rep) {
        best =
            std::min(best, timed_on_threads(threads, [&](int p) {
                       for (int64_t g = groups * p / threads; g < groups * (p + 1) / threads; ++g)
                         fn(n, v.packed + size_t(g) * gb, a, out.data() + g * kPackRows, 0);
                     }));
        best_read = std::min(best_read, timed_on_threads(threads, [&](int p) {
                               const size_t b = size_t(groups * p / threads) * gb,
                                            e = size_t(groups * (p + 1) / threads) * gb;
                               sinks[size_t(p)] = read_loop(v.packed + b, e - b);
                             }));
        for (long long x : sinks) sink ^= x;
      }
      const double k = double(total) / best / 1e9, r = double(total) / best_read / 1e9;
      std::printf("| %s | %s | %.0f | %.1f | %.1f | %.0f%% |%s\n", info(t).name, isa_name(isa),
                  double(total) / 1e6, k, r, 100 * k / r, sink == 12345 ? " " : "");
    }
  }
  return 0;
}

int softcap_bench() {
  const int n = 262144;
  const float cap = 30.f;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.f, 10.f);
  std::vector<float> z(static_cast<size_t>(n)), y(static_cast<size_t>(n));
  for (auto& v : z) v = nd(rng);
  double best_tanh = 1e9, best_lanes = 1e9;
  float sink = 0;
  for (int rep = 0; rep < 20; ++rep) {
    y = z;
    double t0 = now();
    for (auto& v : y) v = cap * std::tanh(v / cap);
    best_tanh = std::min(best_tanh, now() - t0);
    sink += y[size_t(rep)];
    y = z;
    t0 = now();
    softcap_inplace(y.data(), n, cap);
    best_lanes = std::min(best_lanes, now() - t0);
    sink += y[size_t(rep)];
  }
  std::printf("| soft-cap of %d logits, one thread | ms |\n|---|---|\n", n);
  std::printf("| std::tanh per element | %.3f |\n| softcap_inplace | %.3f |%s\n", best_tanh * 1e3,
              best_lanes * 1e3, sink == 12345.f ? " " : "");
  return 0;
}

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--softcap") == 0) return softcap_bench();
  if (argc > 1 && std::strcmp(argv[1], "--stream-packed") == 0)
    return stream_packed(argc > 2 ? std::max(1, std::atoi(argv[2])) : 1);
  const bool stream = argc > 1 && std::strcmp(argv[1], "--stream") == 0;
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  std::printf(
      "| type | n | isa | tokens per call | ns per block per token |\n|---|---|---|---|---|\n");
  for (DType t : {DType::kQ8_0, DType::kQ5_0, DType::kQ4_0, DType::kQ4_K, DType::kQ6_K}) {
    const int64_t n = info(t).block == 256 ? 2048 : 640, rows = 64;
    const auto w = random_weights(t, n, rows, rng);
    std::vector<float> x(size_t(n) * 8);
    for (auto& v : x) v = nd(rng);
    for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {
      if (isa == Isa::kAvx512 && !cpu_has_avx512()) continue;
      if (isa == Isa::kAvx2 && !cpu_has_avx2()) continue;
      const KernelSet ks = kernels_for(t, isa);
      const size_t ab = ks.act_bytes(n);
      std::vector<uint8_t> acts(ab * 8);
      const void* a[8];
      for (int k = 0; k < 8; ++k) {
        ks.prepare(x.data() + k * n, acts.data() + size_t(k) * ab, n);
        a[k] = acts.data() + size_t(k) * ab;
      }
      for (int N : {1, 4, 8}) {
        const VecDot4Fn f = N == 4 ? ks.dot4 : N == 8 ? ks.dot8 : nullptr;
        if (N > 1 && f == nullptr) continue;
        double best = 1e9;
        float out[8], sink = 0;
        for (int rep = 0; rep < 300; ++rep) {
          const double t0 = now();
          for (int64_t r = 0; r < rows; ++r) {
            const uint8_t* wr = w.data() + size_t(r) * row_bytes(t, n);
            if (N == 1)
              out[0] = ks.dot1(n, wr, a[0]);
            else
              f(n, wr, a, out);
            sink += out[0];
          }
          best = std::min(best, now() - t0);
        }
        std::printf("| %s | %lld | %s | %d | %.2f |%s\n", info(t).name, (long long)n, isa_name(isa),
                    N, best * 1e9 / double(rows * N * (n / info(t).block)),
                    sink == 12345.f ? " " : "");
      }
    }
  }
  std::printf(
      "\n| R16-packed type | n | isa | tokens per call | ns per block per row per token |\n"
      "|---|---|---|---|---|\n");
  for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {
    const PackedKernels& pk = packed_kernels(isa);
    if (pk.prepare == nullptr || (isa == Isa::kAvx512 && !cpu_has_avx512())) continue;
    for (DType t : {DType::kQ8_0, DType::kQ5_0, DType::kQ4_0, DType::kQ4_K, DType::kQ6_K}) {
      const int64_t n = info(t).block == 256 ? 2048 : 640, rows = 64, nb = n / kQK;
      auto src = random_weights(t, n, rows, rng);
      WeightView v{t, src.data(), n, rows, row_bytes(t, n)};
      PackedStore store;
      pack_weight(v, store, 1);
      std::vector<float> x(size_t(n) * 8);
      for (auto& e : x) e = nd(rng);
      const size_t ab = pk.act_bytes(n);
      std::vector<uint8_t> acts(ab * 8 + 64);
      const void* a[8];
      for (int k = 0; k < 8; ++k) {
        a[k] = acts.data() + size_t(k) * ab;
        pk.prepare(x.data() + k * n, const_cast<void*>(a[k]), n);
      }
      const size_t gb = packed_group_bytes(t, n);
      const PackedGroupFn* fn = pk.group[int(pack_kind(t)) - 1];
      for (int i = 0; i < 3; ++i) {
        const int N = i == 0 ? 1 : i == 1 ? 4 : 8;
        std::vector<float> out(size_t(8) * size_t(rows));
        double best = 1e9;
        for (int rep = 0; rep < 300; ++rep) {
          const double t0 = now();
          for (int64_t g = 0; g < rows / kPackRows; ++g)
            fn[i](n, v.packed + size_t(g) * gb, a, out.data() + g * kPackRows, size_t(rows));
          best = std::min(best, now() - t0);
        }
        std::printf("| %s | %lld | %s | %d | %.3f |\n", info(t).name, (long long)n, isa_name(isa),
                    N, best * 1e9 / double(rows * nb * N));
      }
    }
  }
  if (stream) {
    const int64_t n = 640, rows = 262144;
    const auto w = random_weights(DType::kQ8_0, n, rows, rng);
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& v : x) v = nd(rng);
    for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {
      if (isa == Isa::kAvx512 && !cpu_has_avx512()) continue;
      const KernelSet ks = kernels_for(DType::kQ8_0, isa);
      std::vector<uint8_t> act(ks.act_bytes(n));
      ks.prepare(x.data(), act.data(), n);
      double best = 1e9;
      float sink = 0;
      for (int rep = 0; rep < 5; ++rep) {
        const double t0 = now();
        for (int64_t r = 0; r < rows; ++r)
          sink += ks.dot1(n, w.data() + size_t(r) * row_bytes(DType::kQ8_0, n), act.data());
        best = std::min(best, now() - t0);
      }
      std::printf("\nLM-head-sized Q8_0 pass (%s, 1 thread): %.1f ms, %.2f GB/s%s\n", isa_name(isa),
                  best * 1e3, double(w.size()) / best / 1e9, sink == 12345.f ? " " : "");
    }
    for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {
      const PackedKernels& pk = packed_kernels(isa);
      if (pk.prepare == nullptr || (isa == Isa::kAvx512 && !cpu_has_avx512())) continue;
      WeightView v{DType::kQ8_0, w.data(), n, rows, row_bytes(DType::kQ8_0, n)};
      PackedStore store;
      pack_weight(v, store);
      std::vector<uint8_t> act(pk.act_bytes(n));
      pk.prepare(x.data(), act.data(), n);
      const void* a[1] = {act.data()};
      std::vector<float> out(static_cast<size_t>(rows));
      const size_t gb = packed_group_bytes(DType::kQ8_0, n);
      double best = 1e9;
      for (int rep = 0; rep < 5; ++rep) {
        const double t0 = now();
        for (int64_t g = 0; g < rows / kPackRows; ++g)
          pk.group[0][0](n, v.packed + size_t(g) * gb, a, out.data() + g * kPackRows, 0);
        best = std::min(best, now() - t0);
      }
      double hot = 1e9;
      for (int rep = 0; rep < 300; ++rep) {
        const double t0 = now();
        for (int64_t g = 0; g < 4; ++g)
          pk.group[0][0](n, v.packed + size_t(g) * gb, a, out.data() + g * kPackRows, 0);
        hot = std::min(hot, now() - t0);
      }
      std::printf("\nR16-packed Q8_0 (%s), 64 rows in L1: %.3f ns per block per row\n",
                  isa_name(isa), hot * 1e9 / double(64 * (n / kQK)));
      std::printf("\nLM-head-sized Q8_0 pass (%s R16-packed, 1 thread): %.1f ms, %.2f GB/s\n",
                  isa_name(isa), best * 1e3, double(store.bytes()) / best / 1e9);
      // The same pass for 8 tokens at once (a server's batched decode step).
      std::vector<uint8_t> act8(pk.act_bytes(n) * 8);
      const void* a8[8];
      for (int k = 0; k < 8; ++k) {
        a8[k] = act8.data() + size_t(k) * pk.act_bytes(n);
        pk.prepare(x.data(), const_cast<void*>(a8[k]), n);
      }
      std::vector<float> out8(static_cast<size_t>(rows) * 8);
      double best8 = 1e9;
      for (int rep = 0; rep < 5; ++rep) {
        const double t0 = now();
        for (int64_t g = 0; g < rows / kPackRows; ++g)
          pk.group[0][2](n, v.packed + size_t(g) * gb, a8, out8.data() + g * kPackRows,
                         size_t(rows));
        best8 = std::min(best8, now() - t0);
      }
      std::printf(
          "LM-head-sized Q8_0 pass, 8 tokens (1 thread): %.1f ms, %.3f ns per block, row "
          "and token\n",
          best8 * 1e3, best8 * 1e9 / double(rows * (n / kQK) * 8));
    }
  }
}
