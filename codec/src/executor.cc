#include "kvtier/codec/executor.h"

#include <algorithm>
#include <atomic>

namespace kvtier::codec {

// One ParallelFor call. Indices are claimed with fetch_add, so every index runs exactly once no matter
// how many threads pick the job up; `fn` is only called for a claimed index, and the caller does not
// return before every claimed index finished, so `fn` outlives all calls to it.
struct ThreadPoolExecutor::Job {
  const std::function<void(size_t)>* fn = nullptr;
  size_t n = 0;
  std::atomic<size_t> next{0};
  std::atomic<size_t> finished{0};
  std::mutex done_mu;
  std::condition_variable done_cv;

  // Runs claimed indices until none are left. Returns after the last claim failed.
  void RunSome() {
    for (;;) {
      const size_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= n) return;
      (*fn)(i);
      if (finished.fetch_add(1, std::memory_order_acq_rel) + 1 == n) {
        std::lock_guard<std::mutex> lock(done_mu);
        done_cv.notify_all();
      }
    }
  }
  bool Exhausted() const { return next.load(std::memory_order_relaxed) >= n; }
};

ThreadPoolExecutor::ThreadPoolExecutor(size_t threads) {
  if (threads == 0) threads = std::max<size_t>(1, std::thread::hardware_concurrency());
  workers_.reserve(threads - 1);
  for (size_t i = 0; i + 1 < threads; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPoolExecutor::~ThreadPoolExecutor() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPoolExecutor::ParallelFor(size_t n, const std::function<void(size_t)>& fn) {
  if (n == 0) return;
  if (n == 1 || workers_.empty()) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  auto job = std::make_shared<Job>();
  job->fn = &fn;
  job->n = n;
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.push_back(job);
  }
  if (n - 1 >= workers_.size()) {
    cv_.notify_all();
  } else {
    for (size_t i = 0; i + 1 < n; ++i) cv_.notify_one();
  }
  job->RunSome();
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = std::find(jobs_.begin(), jobs_.end(), job);
    if (it != jobs_.end()) jobs_.erase(it);
  }
  std::unique_lock<std::mutex> lock(job->done_mu);
  job->done_cv.wait(lock, [&] { return job->finished.load(std::memory_order_acquire) == n; });
}

void ThreadPoolExecutor::WorkerLoop() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (stopping_) return;
      // Drop jobs whose indices are all claimed; their owners wait only for running calls.
      while (!jobs_.empty() && jobs_.front()->Exhausted()) jobs_.erase(jobs_.begin());
      if (jobs_.empty()) continue;
      job = jobs_.front();
    }
    job->RunSome();
  }
}

}  // namespace kvtier::codec
