// The persistent thread pool that every multithreaded kernel runs on.
//
// Workers are created once (and re-created only when set_num_threads changes
// the count), never per call. Idle workers spin briefly and then sleep on a
// condition variable, so an idle pool does not steal the other core.
//
// Every region is a set of independent chunks handed out dynamically: the
// calling thread starts on them at once, and a worker that wakes up (or is
// scheduled) late joins only if chunks remain. The caller returns as soon as
// every chunk has finished, without waiting for workers that never started.
// On a shared machine where the OS has not scheduled a worker, a region
// therefore degrades to single-threaded speed instead of waiting for a
// scheduler slice. Consequence for callers: chunks (tiles, tids) may run on
// any thread, in any order, possibly one after another on the same thread,
// so a chunk must never wait for another chunk of the same region.
//
// Parallel regions are serialised: if two host threads (e.g. two libuv
// workers) start one at once, the second waits until the first finishes,
// so the pool never oversubscribes the cores. A region started from inside
// a running region (nested parallelism) executes inline on the calling thread.
#pragma once

#include <cstdint>
#include <type_traits>
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
      : obj_(const_cast<void*>(static_cast<const void*>(&f))), call_([](void* o, Args... a) -> R {
          return (*static_cast<std::remove_reference_t<F>*>(o))(std::forward<Args>(a)...);
        }) {}
  R operator()(Args... a) const { return call_(obj_, std::forward<Args>(a)...); }

 private:
  void* obj_;
  R (*call_)(void*, Args...);
};

// What the last multi-threaded region did, for measuring the pool's scheduling
// (bench/gemm/pool_probe.cc, native tests). Recorded only while enabled
// (ThreadPool::set_stats): a few relaxed stores per chunk.
struct RegionStats {
  static constexpr int kThreads = 8;  // tids at or above this are counted in the last slot
  int threads = 0;                    // threads the region allowed (caller included)
  int64_t chunks = 0;                 // chunks of the region
  int64_t by_thread[kThreads] = {};   // chunks run by each tid (0: the caller)
  // Nanoseconds from the region's start to each tid's first claim; -1: it ran none.
  int64_t first_claim_ns[kThreads] = {-1, -1, -1, -1, -1, -1, -1, -1};
  int cpu[kThreads] = {-1, -1, -1, -1, -1, -1, -1, -1};  // CPU each tid ran its first chunk on
  int64_t wake_ns = 0;                                   // the caller's time in waking sleeping workers
  int64_t region_ns = 0;                                 // start to the last chunk's end
};

class ThreadPool {
 public:
  static constexpr int kMaxThreads = 256;

  // The process-wide pool. Default size: available parallelism of the process
  // (sched_getaffinity), overridable by ATTNODE_NUM_THREADS at load time.
  static ThreadPool& instance();

  // The pool's size, or 1 on a thread inside a SerialScope.
  int num_threads() const;
  // 1 <= n <= kMaxThreads (callers validate; out-of-range values are clamped).
  void set_num_threads(int n);

  // Runs fn(tid, nthreads) once for each tid in [0, nthreads)
  // (nthreads = min(requested, num_threads()); requested <= 0 means all) and
  // returns when all have finished. The tids are chunks like any other: they
  // may run sequentially on one thread, so fn must not synchronise with
  // other tids (no barriers). Prefer parallel_tiles for new code.
  void run(int requested, FnRef<void(int tid, int nthreads)> fn);

  // Dynamic loop: fn(begin, end) over [0, n) in equal chunks (the last may be
  // shorter), as many as chunks of at least `grain` give, spread over at most
  // `max_threads` threads (<= 0: the whole pool). Runs inline when n <= grain
  // or the pool has 1 thread.
  void parallel_for(int64_t n, int64_t grain, FnRef<void(int64_t begin, int64_t end)> fn, int max_threads = 0);

  // Dynamic tiles: fn(tile) once for each tile in [0, ntiles), each tile
  // claimed by whichever participating thread gets to it first. Runs inline
  // when ntiles <= 1 or the pool (or max_threads) allows 1 thread.
  // Workers still spinning from a previous region join at once; sleeping ones
  // are woken only when the caller's progress shows that enough work remains
  // to repay the wake-up (~100 µs), or immediately with eager_wake (for
  // regions known to be long, e.g. a large GEMM).
  void parallel_tiles(int64_t ntiles, FnRef<void(int64_t tile)> fn, int max_threads = 0, bool eager_wake = false);

  // Records RegionStats for every region from now on (false: stops; the default).
  void set_stats(bool on);
  // The last region's stats (all zero before the first recorded region).
  RegionStats last_region_stats() const;

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // While one lives on a thread, num_threads() reports 1 there, so every kernel that thread calls plans for one
  // thread and runs its regions inline, without the pool (and without its lock). For an executor lane that runs a
  // whole command list on one thread beside other lanes (runtime/executor.h): the lanes, not the pool's workers,
  // share the cores. Results do not change (kernels never depend on the thread count for their arithmetic).
  class SerialScope {
   public:
    SerialScope();
    ~SerialScope();
    SerialScope(const SerialScope&) = delete;
    SerialScope& operator=(const SerialScope&) = delete;

   private:
    bool prev_;
  };

 private:
  ThreadPool();
  ~ThreadPool();
  struct Impl;
  Impl* impl_;
};

}  // namespace attnode::runtime
