// g4_read_bandwidth: how fast plain AVX-512 loads stream a 178 MB buffer (the size of Gemma 3
// 270M's Q8_0 LM head) with 1 and 2 threads, on 4 KiB pages and on transparent huge pages.
// The ceiling the decode kernels are compared with in README "Performance".
//
//   build/release/g4_read_bandwidth
#include <immintrin.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

namespace {

__attribute__((target("avx512f"))) long long read_all(const char* p, size_t n) {
  __m512i a = _mm512_setzero_si512(), b = a;
  for (size_t i = 0; i + 128 <= n; i += 128) {
    a = _mm512_xor_si512(a, _mm512_load_si512(p + i));
    b = _mm512_xor_si512(b, _mm512_load_si512(p + i + 64));
  }
  return _mm512_reduce_add_epi64(_mm512_xor_si512(a, b));
}

double best_gbs(const char* p, size_t n, int threads) {
  double best = 1e9;
  std::vector<long long> sink(static_cast<size_t>(threads));
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> th;
    const size_t part = n / size_t(threads) / 128 * 128;
    for (int t = 0; t < threads; ++t)
      th.emplace_back([&, t] { sink[size_t(t)] = read_all(p + size_t(t) * part, part); });
    for (auto& x : th) x.join();
    best = std::min(best,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  long long s = 0;
  for (long long v : sink) s ^= v;
  return double(n) / best / 1e9 + (s == 12345 ? 1e-12 : 0.0);
}

}  // namespace

int main() {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512f")) {
    std::printf("no AVX-512 on this CPU\n");
    return 0;
  }
  const size_t n = size_t(178) << 20, align = size_t(2) << 20;
  for (bool huge : {false, true}) {
    void* m = mmap(nullptr, n + align, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return 1;
    char* p = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(m) + align - 1) / align * align);
    madvise(p, n, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    std::memset(p, 1, n);
    for (int t : {1, 2})
      std::printf("%s pages, %d thread%s: %.1f GB/s\n", huge ? "huge" : "4 KiB", t,
                  t > 1 ? "s" : "", best_gbs(p, n, t));
    munmap(m, n + align);
  }
  return 0;
}
