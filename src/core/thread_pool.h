// A fixed pool of worker threads for data-parallel kernels.
//
// Threads are created once; parallel_for hands every thread (caller included) one static
// contiguous slice of [0, n). Workers spin briefly between jobs (a decode step issues
// hundreds of small jobs) and then sleep on a condition variable, so an idle engine costs
// no CPU. Thread-safety: parallel_for must be called from one thread at a time.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace g4 {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // fn(begin, end, thread_index) over a static partition of [0, n) into size() slices,
  // each slice a multiple of `grain` (except the last).
  using RangeFn = std::function<void(size_t, size_t, int)>;
  void parallel_for(size_t n, size_t grain, const RangeFn& fn);

 private:
  void worker(int index);
  void run_slice(int index);

  int n_threads_;
  std::vector<std::thread> workers_;
  const RangeFn* job_ = nullptr;
  size_t job_n_ = 0;
  size_t job_grain_ = 1;
  std::atomic<uint64_t> epoch_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace g4
