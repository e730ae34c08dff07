#include "core/thread_pool.h"

#include <algorithm>

#if defined(__x86_64__)
#include <immintrin.h>
#define G4_PAUSE() _mm_pause()
#else
#define G4_PAUSE() ((void)0)
#endif

namespace g4 {

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)) {
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
    epoch_.fetch_add(1);
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::run_slice(int index) {
  const size_t n_grains = (job_n_ + job_grain_ - 1) / job_grain_;
  const size_t per = n_grains / size_t(n_threads_);
  const size_t extra = n_grains % size_t(n_threads_);
  const size_t g0 = size_t(index) * per + std::min<size_t>(size_t(index), extra);
  const size_t g1 = g0 + per + (size_t(index) < extra ? 1 : 0);
  const size_t b = std::min(job_n_, g0 * job_grain_);
  const size_t e = std::min(job_n_, g1 * job_grain_);
  if (b < e) (*job_)(b, e, index);
}

void ThreadPool::parallel_for(size_t n, size_t grain, RangeFn fn) {
  if (n == 0) return;
  if (n_threads_ == 1 || n <= grain) {
    fn(0, n, 0);
    return;
  }
  job_ = &fn;
  job_n_ = n;
  job_grain_ = std::max<size_t>(1, grain);
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mu_);
    epoch_.fetch_add(1, std::memory_order_release);
  }
  cv_.notify_all();
  run_slice(0);
  // Spin for the common case (slices finish together); yield if a worker was descheduled,
  // so an oversubscribed machine does not burn whole time slices here.
  for (int spins = 0; pending_.load(std::memory_order_acquire) != 0; ++spins) {
    if (spins < 4096)
      G4_PAUSE();
    else
      std::this_thread::yield();
  }
  job_ = nullptr;
}

void ThreadPool::worker(int index) {
  uint64_t seen = 0;
  for (;;) {
    // Spin for a while (cheap hand-off during a forward pass), then sleep.
    int spins = 0;
    while (epoch_.load(std::memory_order_acquire) == seen && spins < 200000) {
      if (spins < 4096)
        G4_PAUSE();
      else
        std::this_thread::yield();
      ++spins;
    }
    if (epoch_.load(std::memory_order_acquire) == seen) {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return epoch_.load() != seen; });
    }
    seen = epoch_.load(std::memory_order_acquire);
    if (stop_.load()) return;
    run_slice(index);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

}  // namespace g4
