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
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace g4 {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // A non-owning reference to fn(begin, end, thread_index): unlike std::function it never
  // allocates, so a forward pass issues its hundreds of jobs without touching the heap. The
  // callable only has to outlive the parallel_for call (a lambda argument does).
  class RangeFn {
   public:
    template <typename F>
    requires(!std::is_same_v<std::decay_t<F>, RangeFn>)
        RangeFn(const F& f)  // NOLINT(google-explicit-constructor)
        : obj_(&f), call_([](const void* o, size_t b, size_t e, int t) {
            (*static_cast<const F*>(o))(b, e, t);
          }) {}
    void operator()(size_t b, size_t e, int t) const { call_(obj_, b, e, t); }

   private:
    const void* obj_;
    void (*call_)(const void*, size_t, size_t, int);
  };

  // fn(begin, end, thread_index) over a static partition of [0, n) into size() slices,
  // each slice a multiple of `grain` (except the last).
  void parallel_for(size_t n, size_t grain, RangeFn fn);

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
