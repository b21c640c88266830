// Standalone test of the runtime thread pool's bookkeeping and worker placement:
//  - RegionStats: every chunk of a region counted once, on a thread the region allowed;
//  - a region's chunks all run (parallel_tiles, parallel_for, run), whatever thread takes them;
//  - sleeping workers woken for a region are kept off the waking thread's CPU (their affinity excludes it), unless
//    ATTNODE_WORKER_AFFINITY=0 or the process has a single CPU (visible skips).

#include <dirent.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "check.h"

namespace rt = attnode::runtime;

namespace {

// The ids of this process's threads other than the calling one.
std::vector<pid_t> other_threads() {
  std::vector<pid_t> out;
  const pid_t self = static_cast<pid_t>(syscall(SYS_gettid));
  if (DIR* d = opendir("/proc/self/task")) {
    while (dirent* e = readdir(d)) {
      const long tid = std::strtol(e->d_name, nullptr, 10);
      if (tid > 0 && tid != self) out.push_back(static_cast<pid_t>(tid));
    }
    closedir(d);
  }
  return out;
}

void test_stats() {
  auto& pool = rt::ThreadPool::instance();
  pool.set_stats(true);
  for (int64_t ntiles : {2, 7, 64, 1000}) {
    std::vector<std::atomic<int>> hits(ntiles);
    for (auto& h : hits) h.store(0);
    pool.parallel_tiles(
        ntiles, [&](int64_t t) { hits[t].fetch_add(1); }, 2, true);
    for (int64_t t = 0; t < ntiles; ++t)
      CHECK(hits[t].load() == 1, "tile %ld of %ld ran %d times", (long)t, (long)ntiles, hits[t].load());
    const rt::RegionStats st = pool.last_region_stats();
    CHECK(st.threads == 2, "threads %d, want 2", st.threads);
    CHECK(st.chunks == ntiles, "chunks %ld, want %ld", (long)st.chunks, (long)ntiles);
    int64_t sum = 0;
    for (int t = 0; t < rt::RegionStats::kThreads; ++t) {
      sum += st.by_thread[t];
      CHECK(t < 2 || st.by_thread[t] == 0, "tid %d ran %ld chunks in a 2-thread region", t, (long)st.by_thread[t]);
      CHECK((st.by_thread[t] > 0) == (st.first_claim_ns[t] >= 0), "tid %d: %ld chunks, first claim %ld ns", t,
            (long)st.by_thread[t], (long)st.first_claim_ns[t]);
    }
    CHECK(sum == ntiles, "chunks by thread sum to %ld, want %ld", (long)sum, (long)ntiles);
    CHECK(st.region_ns > 0, "region time %ld ns", (long)st.region_ns);
  }
  // parallel_for covers [0, n) exactly once.
  for (int64_t n : {1, 5, 128, 1001}) {
    std::vector<std::atomic<int>> hits(n);
    for (auto& h : hits) h.store(0);
    pool.parallel_for(n, 4, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
    });
    for (int64_t i = 0; i < n; ++i)
      CHECK(hits[i].load() == 1, "parallel_for(%ld): index %ld ran %d times", (long)n, (long)i, hits[i].load());
  }
  pool.set_stats(false);
  const rt::RegionStats before = pool.last_region_stats();
  pool.parallel_tiles(
      8, [](int64_t) {}, 2, true);
  CHECK(pool.last_region_stats().chunks == before.chunks, "stats recorded while off");
}

void test_steering() {
  const char* env = std::getenv("ATTNODE_WORKER_AFFINITY");
  if (env != nullptr && env[0] == '0') {
    std::printf("skipping worker placement: ATTNODE_WORKER_AFFINITY=0\n");
    return;
  }
  cpu_set_t all;
  CPU_ZERO(&all);
  if (sched_getaffinity(0, sizeof(all), &all) != 0 || CPU_COUNT(&all) < 2) {
    std::printf("skipping worker placement: the process has fewer than 2 CPUs\n");
    return;
  }
  auto& pool = rt::ThreadPool::instance();
  // Each CPU of the set in turn is the caller's: the workers' affinity follows it.
  int tried = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE && tried < 2; ++cpu) {
    if (!CPU_ISSET(cpu, &all)) continue;
    ++tried;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    CHECK(sched_setaffinity(0, sizeof(one), &one) == 0, "pinning the caller to CPU %d", cpu);
    // The wake (and with it the placement) happens only when a worker sleeps: the gap is long enough for the idle
    // spin (at most ATTNODE_MAX_SPIN_US, 1 ms by default) to end in a sleep, and a worker the OS did not schedule in
    // time gets more tries.
    const std::vector<pid_t> workers = other_threads();
    CHECK(!workers.empty(), "no pool worker threads found");
    bool steered = false;
    for (int attempt = 0; attempt < 5 && !steered; ++attempt) {
      std::this_thread::sleep_for(std::chrono::milliseconds(150));
      pool.parallel_tiles(
          64, [](int64_t) { std::this_thread::sleep_for(std::chrono::microseconds(20)); }, 2, true);
      steered = true;
      for (pid_t tid : workers) {
        cpu_set_t m;
        CPU_ZERO(&m);
        steered = steered && sched_getaffinity(tid, sizeof(m), &m) == 0 && !CPU_ISSET(cpu, &m) &&
                  CPU_COUNT(&m) == CPU_COUNT(&all) - 1;
      }
    }
    CHECK(steered, "after 5 regions woken from sleep, a worker may still run on the caller's CPU %d (or lost others)",
          cpu);
  }
  sched_setaffinity(0, sizeof(all), &all);
  // A pool with more threads than CPUs leaves the workers on every CPU.
  pool.set_num_threads(CPU_COUNT(&all) + 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  pool.parallel_tiles(
      64, [](int64_t) { std::this_thread::sleep_for(std::chrono::microseconds(20)); }, 0, true);
  for (pid_t tid : other_threads()) {
    cpu_set_t m;
    CPU_ZERO(&m);
    sched_getaffinity(tid, sizeof(m), &m);
    CHECK(CPU_COUNT(&m) == CPU_COUNT(&all), "oversubscribed pool: worker %d has %d of %d CPUs", (int)tid, CPU_COUNT(&m),
          CPU_COUNT(&all));
  }
  pool.set_num_threads(2);
}

}  // namespace

int main() {
  set_threads(2);
  test_stats();
  test_steering();
  return finish();
}
