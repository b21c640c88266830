// The persistent thread pool that every multithreaded kernel runs on.
//
// Workers are created once (and re-created only when set_num_threads changes
// the count), never per call. Idle workers spin briefly and then sleep on a
// condition variable, so an idle pool does not steal the other core.
// The calling thread takes part as thread 0.
//
// Parallel regions are serialised: if two host threads (e.g. two libuv
// workers) call run() at once, the second waits until the first finishes,
// so the pool never oversubscribes the cores. A run() issued from inside a
// running region (nested parallelism) executes inline on the calling thread.
#pragma once

#include <cstdint>
#include <utility>

namespace attnode::runtime {

// Non-owning reference to a callable, cheaper than std::function (no allocation).
template <typename Sig>
class FnRef;
template <typename R, typename... Args>
class FnRef<R(Args...)> {
 public:
  template <typename F>
  FnRef(F&& f) noexcept  // NOLINT(google-explicit-constructor)
      : obj_(const_cast<void*>(static_cast<const void*>(&f))),
        call_([](void* o, Args... a) -> R { return (*static_cast<std::remove_reference_t<F>*>(o))(std::forward<Args>(a)...); }) {}
  R operator()(Args... a) const { return call_(obj_, std::forward<Args>(a)...); }

 private:
  void* obj_;
  R (*call_)(void*, Args...);
};

class ThreadPool {
 public:
  static constexpr int kMaxThreads = 256;

  // The process-wide pool. Default size: available parallelism of the process
  // (sched_getaffinity), overridable by ATTNODE_NUM_THREADS at load time.
  static ThreadPool& instance();

  int num_threads() const;
  // 1 <= n <= kMaxThreads (callers validate; out-of-range values are clamped).
  void set_num_threads(int n);

  // SPMD: runs fn(tid, nthreads) once on each of `nthreads` threads
  // (nthreads = min(requested, num_threads()); requested <= 0 means all).
  // Returns when all have finished. The caller runs tid 0.
  void run(int requested, FnRef<void(int tid, int nthreads)> fn);

  // Dynamic loop: fn(begin, end) over [0, n) in chunks of at least `grain`,
  // spread over the pool. Runs inline when n <= grain or the pool has 1 thread.
  void parallel_for(int64_t n, int64_t grain, FnRef<void(int64_t begin, int64_t end)> fn);

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

 private:
  ThreadPool();
  ~ThreadPool();
  struct Impl;
  Impl* impl_;
};

}  // namespace attnode::runtime
