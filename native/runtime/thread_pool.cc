#include "thread_pool.h"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

namespace attnode::runtime {
namespace {

using Job = FnRef<void(int, int)>;

// Long enough to catch the next region of a kernel sequence (e.g. back-to-back
// GEMMs of a transformer layer), short enough not to steal a shared core.
constexpr auto kSpinTime = std::chrono::microseconds(50);

// Set on pool workers and on a host thread while it runs a region: a run()
// issued under it is nested and must not wait on the (busy) pool.
thread_local bool t_in_region = false;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

int default_threads() {
  int n = 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) n = CPU_COUNT(&set);
  if (n <= 0) n = static_cast<int>(std::thread::hardware_concurrency());
  if (const char* env = std::getenv("ATTNODE_NUM_THREADS")) {
    char* end = nullptr;
    long v = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && v > 0) n = static_cast<int>(std::min<long>(v, ThreadPool::kMaxThreads));
  }
  return std::clamp(n, 1, ThreadPool::kMaxThreads);
}

}  // namespace

struct ThreadPool::Impl {
  // Serialises regions from different host threads and resizing.
  std::mutex run_mu;

  // (generation << 16) | nthreads, published in one atomic so that a worker
  // decides "am I in this region" consistently with the generation it saw: a
  // participant then pins the region (the caller waits for it), making `job`
  // safe to read.
  std::atomic<uint64_t> seq{0};
  std::atomic<const Job*> job{nullptr};
  std::atomic<int> remaining{0};
  std::atomic<bool> stop{false};

  std::mutex sleep_mu;
  std::condition_variable sleep_cv;
  std::atomic<int> sleepers{0};

  // The caller sleeps too when workers lag (oversubscribed or descheduled
  // cores); spinning there would keep the lagging worker off the CPU.
  std::mutex done_mu;
  std::condition_variable done_cv;
  std::atomic<bool> caller_sleeping{false};

  std::vector<std::thread> workers;
  std::atomic<int> size{1};

  // `seen` is captured before the thread is created: reading it inside the
  // new thread could already observe the first region and skip it.
  void worker_main(int tid, uint64_t seen) {
    t_in_region = true;
    for (;;) {
      uint64_t s = wait_for_change(seen);
      if (stop.load(std::memory_order_acquire)) return;
      seen = s;
      int nt = static_cast<int>(s & 0xffff);
      if (tid >= nt) continue;
      const Job* fn = job.load(std::memory_order_acquire);
      (*fn)(tid, nt);
      if (remaining.fetch_sub(1, std::memory_order_seq_cst) == 1 && caller_sleeping.load(std::memory_order_seq_cst)) {
        { std::lock_guard<std::mutex> lk(done_mu); }
        done_cv.notify_one();
      }
    }
  }

  uint64_t wait_for_change(uint64_t seen) {
    auto start = std::chrono::steady_clock::now();
    for (int i = 0;; ++i) {
      uint64_t s = seq.load(std::memory_order_acquire);
      if (s != seen) return s;
      cpu_relax();
      if ((i & 255) == 255 && std::chrono::steady_clock::now() - start > kSpinTime) break;
    }
    std::unique_lock<std::mutex> lk(sleep_mu);
    sleepers.fetch_add(1, std::memory_order_seq_cst);
    uint64_t s;
    while ((s = seq.load(std::memory_order_seq_cst)) == seen) sleep_cv.wait(lk);
    sleepers.fetch_sub(1, std::memory_order_relaxed);
    return s;
  }

  // Publishes a new generation. The seq_cst store/load pair against the
  // worker's sleepers increment / seq load rules out a lost wake-up.
  void publish(int nt) {
    uint64_t gen = (seq.load(std::memory_order_relaxed) >> 16) + 1;
    seq.store((gen << 16) | static_cast<uint64_t>(nt), std::memory_order_seq_cst);
    if (sleepers.load(std::memory_order_seq_cst) > 0) {
      { std::lock_guard<std::mutex> lk(sleep_mu); }
      sleep_cv.notify_all();
    }
  }

  void start(int n) {
    stop.store(false, std::memory_order_relaxed);
    workers.reserve(n - 1);
    uint64_t s0 = seq.load(std::memory_order_relaxed);
    for (int t = 1; t < n; ++t) workers.emplace_back([this, t, s0] { worker_main(t, s0); });
    size.store(n, std::memory_order_release);
  }

  void shutdown() {
    stop.store(true, std::memory_order_seq_cst);
    publish(0);
    for (auto& w : workers) w.join();
    workers.clear();
    size.store(1, std::memory_order_release);
  }
};

ThreadPool& ThreadPool::instance() {
  // Intentionally leaked: workers may still be parked on the condvar when the
  // process exits, and running a destructor (joining) from a static-destruction
  // context of an unloading addon is where pools usually crash.
  static ThreadPool* pool = new ThreadPool();
  return *pool;
}

ThreadPool::ThreadPool() : impl_(new Impl()) { impl_->start(default_threads()); }

ThreadPool::~ThreadPool() {
  impl_->shutdown();
  delete impl_;
}

int ThreadPool::num_threads() const { return impl_->size.load(std::memory_order_acquire); }

void ThreadPool::set_num_threads(int n) {
  n = std::clamp(n, 1, kMaxThreads);
  std::lock_guard<std::mutex> lk(impl_->run_mu);
  if (n == impl_->size.load(std::memory_order_relaxed)) return;
  impl_->shutdown();
  impl_->start(n);
}

void ThreadPool::run(int requested, FnRef<void(int tid, int nthreads)> fn) {
  int nt = num_threads();
  if (requested > 0) nt = std::min(nt, requested);
  if (nt <= 1 || t_in_region) {
    fn(0, 1);
    return;
  }
  Impl& im = *impl_;
  std::lock_guard<std::mutex> lk(im.run_mu);
  // Re-read under the lock: a concurrent set_num_threads may have shrunk the pool.
  nt = std::min(nt, im.size.load(std::memory_order_relaxed));
  if (nt <= 1) {
    fn(0, 1);
    return;
  }
  im.job.store(&fn, std::memory_order_relaxed);
  im.remaining.store(nt - 1, std::memory_order_relaxed);
  im.publish(nt);
  t_in_region = true;
  fn(0, nt);
  t_in_region = false;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; im.remaining.load(std::memory_order_acquire) != 0; ++i) {
    cpu_relax();
    if ((i & 255) == 255 && std::chrono::steady_clock::now() - start > kSpinTime) {
      std::unique_lock<std::mutex> dl(im.done_mu);
      im.caller_sleeping.store(true, std::memory_order_seq_cst);
      while (im.remaining.load(std::memory_order_seq_cst) != 0) im.done_cv.wait(dl);
      im.caller_sleeping.store(false, std::memory_order_relaxed);
      break;
    }
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, FnRef<void(int64_t begin, int64_t end)> fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  int nt = num_threads();
  if (n <= grain || nt <= 1 || t_in_region) {
    fn(0, n);
    return;
  }
  int64_t max_chunks = (n + grain - 1) / grain;
  nt = static_cast<int>(std::min<int64_t>(nt, max_chunks));
  // A few chunks per thread balance uneven progress (noisy neighbours) while
  // keeping the atomic traffic negligible.
  int64_t chunk = std::max<int64_t>(grain, (n + 4 * nt - 1) / (4 * nt));
  std::atomic<int64_t> next{0};
  run(nt, [&](int, int) {
    for (;;) {
      int64_t b = next.fetch_add(chunk, std::memory_order_relaxed);
      if (b >= n) break;
      fn(b, std::min(n, b + chunk));
    }
  });
}

}  // namespace attnode::runtime
