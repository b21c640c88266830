#include "thread_pool.h"
#include "thread_priority.h"

#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace attnode::runtime {
namespace {

using ChunkFn = FnRef<void(int64_t)>;

// Long enough to catch the next region of a kernel sequence (e.g. back-to-back
// GEMMs of a transformer layer), short enough not to steal a shared core.
constexpr auto kSpinTime = std::chrono::microseconds(50);

// An idle worker spins longer while regions come in a quick series whose gaps
// exceed kSpinTime: synchronous calls from JS leave 0.1-0.3 ms of JS work
// between two kernels (measured on a BERT layer), and a worker that sleeps
// there is woken for every kernel; on a VM, waking a vCPU that halted costs
// far more than the futex. The spin is twice the last gap when that fits
// under this cap, else kSpinTime: a burst of synchronous calls keeps the
// workers awake, while the ~1 ms and longer gaps between a server's requests
// (where a spinning worker would take CPU from the event loop) and an idle
// process get the short spin. The caller waiting for a region's last chunks
// spins as long before it sleeps. Measured (6-layer BERT encoder 1 x 128,
// 2 threads, synchronous, 150 ms idle between forwards, alternating runs):
// 45-54 ms against 55-63 ms with the cap at 0; a server's event-loop delay
// and throughput are unchanged. ATTNODE_MAX_SPIN_US sets the cap (0: always
// the short spin).
// An environment variable that is a whole decimal number >= min, capped at
// max; `fallback` when it is unset or anything else.
long env_long(const char* name, long min, long max, long fallback) {
  const char* env = std::getenv(name);
  if (env == nullptr) return fallback;
  char* end = nullptr;
  const long v = std::strtol(env, &end, 10);
  return end != env && *end == '\0' && v >= min ? std::min(v, max) : fallback;
}

const std::chrono::microseconds kMaxAdaptiveSpin{env_long("ATTNODE_MAX_SPIN_US", 0, 100000, 1000)};

// Waking a sleeping worker costs the caller tens of µs on a virtualised or
// loaded machine (the futex wake, and often the woken thread is placed on
// the caller's own core and preempts it), and the worker starts ~30-50 µs
// later. Below about this much remaining work a region is finished sooner
// by the caller alone (plus any worker still spinning from the last region).
constexpr auto kWakeWorth = std::chrono::microseconds(100);

// Sleeping workers are kept off the CPU of the thread that wakes them (see Impl::steer_from). Measured on the
// 2-vCPU Zen 4 VM (bench/gemm/pool_probe.sh, 2 threads, 512 x 768 x 768 after idle gaps, loaded): the woken worker
// ran its first tile on the caller's CPU in 27 of 34 calls, often milliseconds after the region started, so the
// 5.7 ms product ran at one thread's speed; with the steering, in none of 28
// (bench/results/gemm-pool-zen4-2026-12-08-LOADED.md). ATTNODE_WORKER_AFFINITY=0 leaves the placement to the
// scheduler.
const bool kSteerWorkers = [] {
  const char* e = std::getenv("ATTNODE_WORKER_AFFINITY");
  return !(e != nullptr && e[0] == '0');
}();

// The claim word packs (generation, chunk count, next chunk) so that one CAS
// both checks that the region is still the one the claimant was woken for
// and takes a chunk of it: a worker that wakes after its region finished
// (or a newer one started) can never take, or even read, anything of it.
constexpr int kNextBits = 20, kCountBits = 20;
constexpr uint64_t kNextMask = (uint64_t{1} << kNextBits) - 1;
constexpr uint64_t kCountMask = (uint64_t{1} << kCountBits) - 1;
constexpr int64_t kMaxChunks = static_cast<int64_t>(kNextMask);
constexpr uint64_t kGenMask = (uint64_t{1} << (64 - kNextBits - kCountBits)) - 1;

inline uint64_t make_ticket(uint64_t gen, int64_t count) {
  return ((gen & kGenMask) << (kNextBits + kCountBits)) | (static_cast<uint64_t>(count) << kNextBits);
}
inline uint64_t ticket_gen(uint64_t t) { return t >> (kNextBits + kCountBits); }
inline int64_t ticket_count(uint64_t t) { return static_cast<int64_t>((t >> kNextBits) & kCountMask); }
inline int64_t ticket_next(uint64_t t) { return static_cast<int64_t>(t & kNextMask); }

// Set on pool workers and on a host thread while it runs a region: a region
// started under it is nested and must not wait on the (busy) pool.
thread_local bool t_in_region = false;
// Set on a thread while a ThreadPool::SerialScope lives there: num_threads() is 1 on it.
thread_local bool t_serial = false;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// One step of a polite spin: mostly pause, but every few dozen steps give the
// core away if anything else is runnable on it. When the scheduler puts a
// woken worker on the caller's core (wake-affine placement while the other
// core is busy), a plain spin there would keep the caller, which holds the
// work, off the CPU for the whole spin; sched_yield costs ~1 µs when nothing
// else wants the core.
inline void spin_step(int i) {
  if ((i & 31) == 31) {
    sched_yield();
  } else {
    cpu_relax();
  }
}

int default_threads() {
  int n = 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) n = CPU_COUNT(&set);
  if (n <= 0) n = static_cast<int>(std::thread::hardware_concurrency());
  n = static_cast<int>(env_long("ATTNODE_NUM_THREADS", 1, ThreadPool::kMaxThreads, n));
  return std::clamp(n, 1, ThreadPool::kMaxThreads);
}

}  // namespace

struct ThreadPool::Impl {
  // Serialises regions from different host threads and resizing.
  std::mutex run_mu;

  // Wake-up word: (generation << 16) | participating threads. Workers only
  // use it to learn that there is something to look at; all claiming goes
  // through `ticket`.
  alignas(64) std::atomic<uint64_t> seq{0};
  // Region state, pool-owned so a late worker only ever touches pool memory.
  alignas(64) std::atomic<uint64_t> ticket{0};
  // Read only after a successful claim, which pins the region: the caller
  // cannot return (and its stack frame holding *chunk cannot go away) before
  // the claimed chunk is counted in `done`.
  std::atomic<const ChunkFn*> chunk{nullptr};
  alignas(64) std::atomic<int64_t> done{0};
  std::atomic<bool> stop{false};

  // First exception thrown by a chunk; rethrown by the caller.
  std::mutex err_mu;
  std::exception_ptr error;

  // Idle spin of the workers, and when the last region ended (steady clock, µs): see adapt_idle_spin.
  std::atomic<int64_t> idle_spin_us{kSpinTime.count()};
  std::atomic<int64_t> last_region_end_us{0};

  std::mutex sleep_mu;
  std::condition_variable sleep_cv;
  std::atomic<int> sleepers{0};

  // The caller sleeps when the last chunks are held by lagging workers
  // (descheduled cores); spinning there would keep them off the CPU, and an
  // idle core lets the scheduler move a preempted worker onto it.
  std::mutex done_mu;
  std::condition_variable done_cv;
  std::atomic<bool> caller_sleeping{false};

  std::vector<std::thread> workers;
  std::atomic<int> size{1};

  // Worker placement. The scheduler places a woken thread by load and cache affinity, and often puts a pool worker
  // on the CPU of the caller that woke it, which is busy running the region's first tiles: the worker, at a lower
  // nice value than the caller, then waits there for a scheduler tick (4 ms at HZ=250) or a load-balancing pass
  // while other CPUs stand idle, and the region runs at one thread's speed. So the workers' affinity is the
  // process's CPUs minus the waking thread's current CPU, set before a wake only when that CPU changed since the
  // last setting (no system call in steady state), and only when the workers fit on the other CPUs (a pool
  // larger than the CPU set keeps the full set). Touched only by the thread holding run_mu.
  cpu_set_t base_cpus;
  int base_count = 0;
  int steered_cpu = -1;
  std::unique_ptr<std::atomic<pid_t>[]> worker_tids;

  void steer_from(int cpu) {
    if (!kSteerWorkers || cpu < 0 || cpu >= CPU_SETSIZE || cpu == steered_cpu) return;
    const int n = size.load(std::memory_order_relaxed);
    if (n > base_count || !CPU_ISSET(cpu, &base_cpus)) return;
    cpu_set_t away = base_cpus;
    CPU_CLR(cpu, &away);
    for (int t = 1; t < n; ++t) {
      const pid_t tid = worker_tids[t].load(std::memory_order_acquire);
      if (tid > 0) sched_setaffinity(tid, sizeof(away), &away);
    }
    steered_cpu = cpu;
  }

  // RegionStats of the running region (see ThreadPool::set_stats): slots written by the thread of that tid, read
  // by the caller once every chunk is counted in `done` (which orders them).
  std::atomic<bool> stats_on{false};
  int64_t region_start_ns = 0;
  std::atomic<int64_t> st_chunks[RegionStats::kThreads];
  std::atomic<int64_t> st_first_ns[RegionStats::kThreads];
  std::atomic<int> st_cpu[RegionStats::kThreads];
  RegionStats last_stats;

  static int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }

  void stats_claimed(int tid) {
    const int s = std::min(tid, RegionStats::kThreads - 1);
    if (st_chunks[s].fetch_add(1, std::memory_order_relaxed) == 0) {
      st_first_ns[s].store(now_ns() - region_start_ns, std::memory_order_relaxed);
      st_cpu[s].store(sched_getcpu(), std::memory_order_relaxed);
    }
  }

  // Wakes sleeping workers (spinning ones have already seen `seq`).
  void wake_sleepers() {
    if (sleepers.load(std::memory_order_seq_cst) > 0) {
      steer_from(sched_getcpu());
      { std::lock_guard<std::mutex> lk(sleep_mu); }
      sleep_cv.notify_all();
    }
  }

  // Claims and runs chunks of generation `gen` until none are left. Returns
  // after the last claimed chunk is counted; never touches *chunk after that.
  // The caller passes `lazy_wake`: it wakes sleeping workers only once its
  // own chunks show that enough work remains to pay for the wake-up.
  void work(uint64_t gen, int tid, bool lazy_wake = false) {
    const bool is_caller = tid == 0;
    const bool stats = stats_on.load(std::memory_order_relaxed);
    const auto t0 = std::chrono::steady_clock::now();
    int64_t mine = 0;
    gen &= kGenMask;
    uint64_t t = ticket.load(std::memory_order_acquire);
    for (;;) {
      if (ticket_gen(t) != gen) return;
      const int64_t count = ticket_count(t), idx = ticket_next(t);
      if (idx >= count) return;
      if (!ticket.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
      const ChunkFn* fn = chunk.load(std::memory_order_relaxed);
      if (stats) stats_claimed(tid);
      try {
        (*fn)(idx);
      } catch (...) {
        std::lock_guard<std::mutex> lk(err_mu);
        if (!error) error = std::current_exception();
      }
      if (done.fetch_add(1, std::memory_order_seq_cst) + 1 == count && !is_caller &&
          caller_sleeping.load(std::memory_order_seq_cst)) {
        { std::lock_guard<std::mutex> lk(done_mu); }
        done_cv.notify_one();
      }
      t = ticket.load(std::memory_order_acquire);
      if (lazy_wake) {
        // Unclaimed work left, at this thread's pace so far.
        ++mine;
        const int64_t left = ticket_gen(t) == gen ? count - ticket_next(t) : 0;
        const auto est = (std::chrono::steady_clock::now() - t0) * left / mine;
        if (left <= 0) {
          lazy_wake = false;
        } else if (est >= kWakeWorth) {
          wake_sleepers();
          lazy_wake = false;
        }
      }
    }
  }

  // `seen` is captured before the thread is created: reading it inside the
  // new thread could already observe the first region and skip it.
  void worker_main(int tid, uint64_t seen) {
    t_in_region = true;
    worker_tids[tid].store(static_cast<pid_t>(syscall(SYS_gettid)), std::memory_order_release);
    lower_background_thread_priority();
    for (;;) {
      uint64_t s = wait_for_change(seen);
      if (stop.load(std::memory_order_acquire)) return;
      seen = s;
      if (tid >= static_cast<int>(s & 0xffff)) continue;
      work(s >> 16, tid);
    }
  }

  uint64_t wait_for_change(uint64_t seen) {
    // The spin counts from when the region ended, not from when this worker
    // ran out of chunks: the caller may still be finishing its own.
    const int64_t start = now_us();
    const int64_t spin = idle_spin_us.load(std::memory_order_relaxed);
    for (int i = 0;; ++i) {
      uint64_t s = seq.load(std::memory_order_acquire);
      if (s != seen) return s;
      spin_step(i);
      if ((i & 31) == 31 && now_us() - std::max(start, last_region_end_us.load(std::memory_order_relaxed)) > spin) {
        break;
      }
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
  // Without `wake`, only spinning workers join (the caller may wake the
  // sleepers later).
  void publish(int nt, bool wake = true) {
    uint64_t gen = (seq.load(std::memory_order_relaxed) >> 16) + 1;
    seq.store((gen << 16) | static_cast<uint64_t>(nt), std::memory_order_seq_cst);
    if (wake) wake_sleepers();
  }

  // Runs chunks [0, nchunks) on up to nt threads (caller included). Called
  // with run_mu held, nt >= 2, 1 <= nchunks <= kMaxChunks.
  static int64_t now_us() {
    return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }

  // Sets the workers' idle spin from the gap since the previous region ended (see kMaxAdaptiveSpin).
  void adapt_idle_spin() {
    const int64_t gap_us = now_us() - last_region_end_us.load(std::memory_order_relaxed);
    int64_t spin = kSpinTime.count();
    if (gap_us > 0 && 2 * gap_us <= kMaxAdaptiveSpin.count()) spin = std::max<int64_t>(2 * gap_us, spin);
    idle_spin_us.store(spin, std::memory_order_relaxed);
  }

  void region(int nt, int64_t nchunks, const ChunkFn& fn, bool eager_wake) {
    adapt_idle_spin();
    const bool stats = stats_on.load(std::memory_order_relaxed);
    if (stats) {
      for (int i = 0; i < RegionStats::kThreads; ++i) {
        st_chunks[i].store(0, std::memory_order_relaxed);
        st_first_ns[i].store(-1, std::memory_order_relaxed);
        st_cpu[i].store(-1, std::memory_order_relaxed);
      }
      region_start_ns = now_ns();
    }
    const uint64_t gen = (seq.load(std::memory_order_relaxed) >> 16) + 1;
    chunk.store(&fn, std::memory_order_relaxed);
    done.store(0, std::memory_order_relaxed);
    // Release: a claimant that reads this ticket (or a later CAS of it) sees
    // `chunk` and `done` reset. Stored before `seq` so a woken worker finds it.
    ticket.store(make_ticket(gen, nchunks), std::memory_order_seq_cst);
    const int64_t wake0 = stats ? now_ns() : 0;
    publish(nt, eager_wake);
    const int64_t wake_ns = stats ? now_ns() - wake0 : 0;
    t_in_region = true;
    work(gen, 0, !eager_wake);
    t_in_region = false;
    // All chunks are claimed; wait for the ones still running elsewhere. In
    // a burst the caller spins as long as an idle worker would (its core has
    // nothing else to do, and a halted vCPU wakes slowly); else kSpinTime.
    auto start = std::chrono::steady_clock::now();
    const auto wait_spin = std::chrono::microseconds(idle_spin_us.load(std::memory_order_relaxed));
    for (int i = 0; done.load(std::memory_order_acquire) != nchunks; ++i) {
      spin_step(i);
      if ((i & 31) == 31 && std::chrono::steady_clock::now() - start > wait_spin) {
        std::unique_lock<std::mutex> dl(done_mu);
        caller_sleeping.store(true, std::memory_order_seq_cst);
        while (done.load(std::memory_order_seq_cst) != nchunks) done_cv.wait(dl);
        caller_sleeping.store(false, std::memory_order_relaxed);
        break;
      }
    }
    last_region_end_us.store(now_us(), std::memory_order_relaxed);
    if (stats) {
      RegionStats r;
      r.threads = nt;
      r.chunks = nchunks;
      for (int i = 0; i < RegionStats::kThreads; ++i) {
        r.by_thread[i] = st_chunks[i].load(std::memory_order_relaxed);
        r.first_claim_ns[i] = st_first_ns[i].load(std::memory_order_relaxed);
        r.cpu[i] = st_cpu[i].load(std::memory_order_relaxed);
      }
      r.wake_ns = wake_ns;
      r.region_ns = now_ns() - region_start_ns;
      last_stats = r;
    }
    if (error) {  // only chunks of this region could have set it; all finished
      std::exception_ptr e;
      std::swap(e, error);
      std::rethrow_exception(e);
    }
  }

  void start(int n) {
    stop.store(false, std::memory_order_relaxed);
    CPU_ZERO(&base_cpus);
    base_count = sched_getaffinity(0, sizeof(base_cpus), &base_cpus) == 0 ? CPU_COUNT(&base_cpus) : 0;
    steered_cpu = -1;
    worker_tids.reset(new std::atomic<pid_t>[n]);
    for (int t = 0; t < n; ++t) worker_tids[t].store(0, std::memory_order_relaxed);
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

void ThreadPool::set_stats(bool on) {
  std::lock_guard<std::mutex> lk(impl_->run_mu);
  impl_->stats_on.store(on, std::memory_order_relaxed);
}

RegionStats ThreadPool::last_region_stats() const {
  std::lock_guard<std::mutex> lk(impl_->run_mu);
  return impl_->last_stats;
}

int ThreadPool::num_threads() const { return t_serial ? 1 : impl_->size.load(std::memory_order_acquire); }

ThreadPool::SerialScope::SerialScope() : prev_(t_serial) { t_serial = true; }
ThreadPool::SerialScope::~SerialScope() { t_serial = prev_; }

void ThreadPool::set_num_threads(int n) {
  n = std::clamp(n, 1, kMaxThreads);
  std::lock_guard<std::mutex> lk(impl_->run_mu);
  if (n == impl_->size.load(std::memory_order_relaxed)) return;
  impl_->shutdown();
  impl_->start(n);
}

void ThreadPool::parallel_tiles(int64_t ntiles, FnRef<void(int64_t tile)> fn, int max_threads, bool eager_wake) {
  if (ntiles <= 0) return;
  int nt = num_threads();
  if (max_threads > 0) nt = std::min(nt, max_threads);
  nt = static_cast<int>(std::min<int64_t>(nt, ntiles));
  auto inline_all = [&] {
    for (int64_t t = 0; t < ntiles; ++t) fn(t);
  };
  if (nt <= 1 || t_in_region) return inline_all();
  Impl& im = *impl_;
  std::lock_guard<std::mutex> lk(im.run_mu);
  // Re-read under the lock: a concurrent set_num_threads may have shrunk the pool.
  nt = std::min(nt, im.size.load(std::memory_order_relaxed));
  if (nt <= 1) return inline_all();
  if (ntiles <= kMaxChunks) {
    im.region(nt, ntiles, fn, eager_wake);
    return;
  }
  // More tiles than the claim word can count: consecutive tiles per chunk.
  const int64_t per = (ntiles + kMaxChunks - 1) / kMaxChunks;
  auto grouped = [&](int64_t c) {
    for (int64_t t = c * per, e = std::min(ntiles, t + per); t < e; ++t) fn(t);
  };
  im.region(nt, (ntiles + per - 1) / per, ChunkFn(grouped), eager_wake);
}

void ThreadPool::run(int requested, FnRef<void(int tid, int nthreads)> fn) {
  int nt = num_threads();
  if (requested > 0) nt = std::min(nt, requested);
  if (nt <= 1 || t_in_region) {
    fn(0, 1);
    return;
  }
  // nthreads is fixed before the region starts (it shapes each tid's share),
  // even though fewer threads may end up running the tids.
  parallel_tiles(
      nt, [&](int64_t tid) { fn(static_cast<int>(tid), nt); }, nt);
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, FnRef<void(int64_t begin, int64_t end)> fn, int max_threads) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  int nt = num_threads();
  if (max_threads > 0) nt = std::min(nt, max_threads);
  if (n <= grain || nt <= 1 || t_in_region) {
    fn(0, n);
    return;
  }
  // Several chunks per thread: a thread that lags (descheduled, or woken
  // late) then holds up at most one small chunk, and the others take the
  // rest. The grain keeps the per-chunk claim cost negligible.
  constexpr int64_t kChunksPerThread = 8;
  const int64_t most = std::max(grain, (n + kChunksPerThread * nt - 1) / (kChunksPerThread * nt));
  const int64_t nchunks = (n + most - 1) / most;
  // As many chunks, of equal size: 128 rows of 768 (grain 42 rows) were 42 + 42 + 42 + 2, so at 2 threads one
  // thread ran 84 rows and the other 44; as 4 x 32 each runs 64.
  const int64_t chunk = (n + nchunks - 1) / nchunks;
  parallel_tiles(
      nchunks, [&](int64_t c) { fn(c * chunk, std::min(n, (c + 1) * chunk)); }, nt);
}

}  // namespace attnode::runtime
