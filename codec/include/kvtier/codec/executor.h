// Executor: where the codec runs independent pieces of work (streams of one chunk) in parallel.
//
// The codec owns no threads; callers pass an Executor they own. InlineExecutor runs everything on the
// calling thread; ThreadPoolExecutor keeps a fixed set of workers and lets the calling thread help, so
// a ParallelFor never waits on an idle pool. Both are thread-safe: several ParallelFor calls may run at
// once from different threads.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace kvtier::codec {

class Executor {
 public:
  virtual ~Executor() = default;
  // Calls fn(i) for every i in [0, n) and returns when all calls returned. fn must not throw.
  virtual void ParallelFor(size_t n, const std::function<void(size_t)>& fn) = 0;
  // Threads that may run work at once, the caller included.
  virtual size_t Concurrency() const = 0;
};

class InlineExecutor final : public Executor {
 public:
  void ParallelFor(size_t n, const std::function<void(size_t)>& fn) override {
    for (size_t i = 0; i < n; ++i) fn(i);
  }
  size_t Concurrency() const override { return 1; }
};

class ThreadPoolExecutor final : public Executor {
 public:
  // threads = total parallelism including the caller; 0 = std::thread::hardware_concurrency().
  explicit ThreadPoolExecutor(size_t threads = 0);
  ~ThreadPoolExecutor() override;
  ThreadPoolExecutor(const ThreadPoolExecutor&) = delete;
  ThreadPoolExecutor& operator=(const ThreadPoolExecutor&) = delete;

  void ParallelFor(size_t n, const std::function<void(size_t)>& fn) override;
  size_t Concurrency() const override { return workers_.size() + 1; }

 private:
  struct Job;
  void WorkerLoop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<Job>> jobs_;  // guarded by mu_: jobs with unclaimed indices
  bool stopping_ = false;                   // guarded by mu_
  std::vector<std::thread> workers_;
};

}  // namespace kvtier::codec
