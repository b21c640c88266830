// How the thread pool shares a GEMM's tiles: for each shape and each idle gap before a call (the time the workers
// had to fall asleep), the call's wall time, the tiles each thread ran, when each worker claimed its first tile
// after the region started, on which CPU (a worker woken onto the caller's CPU waits behind it), and the caller's
// time spent waking the workers (ThreadPool::set_stats, RegionStats). Medians over --calls calls per gap.
//
// Usage: pool_probe [--threads 2] [--shapes 512x768x768,...] [--layout xWt|xW|packed] [--gaps-us 0,200,2000,150000]
//                   [--calls 15]
// Built and run by bench/gemm/pool_probe.sh.

#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../../native/kernels/gemm/gemm.h"
#include "../../native/runtime/thread_pool.h"
#include "bench_util.h"
#include "fma_peak.h"

namespace {

namespace rt = attnode::runtime;
namespace kn = attnode::kernels;
using attnode_bench::median;
using attnode_bench::process_cpu_s;
using attnode_bench::split;
using attnode_bench::wall_s;

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, calls = 15;
  std::string layout = "xWt";
  std::vector<std::string> shapes = {"128x768x768", "512x768x768", "512x768x2304", "2048x768x768"};
  std::vector<long> gaps = {0, 200, 2000, 150000};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "pool_probe: %s needs a value\n", a.c_str());
      return 2;
    }
    const std::string v = argv[++i];
    if (a == "--threads") {
      threads = std::max(1, std::atoi(v.c_str()));
    } else if (a == "--calls") {
      calls = std::max(1, std::atoi(v.c_str()));
    } else if (a == "--layout" && (v == "xWt" || v == "xW" || v == "packed")) {
      layout = v;
    } else if (a == "--shapes") {
      shapes = split(v);
    } else if (a == "--gaps-us") {
      gaps.clear();
      for (auto& g : split(v)) gaps.push_back(std::max(0L, std::atol(g.c_str())));
    } else {
      std::fprintf(stderr, "pool_probe: unknown argument or value: %s %s\n", a.c_str(), v.c_str());
      return 2;
    }
  }
  auto& pool = rt::ThreadPool::instance();
  pool.set_num_threads(threads);
  const double peak = attnode_bench::measure_fma_peak_1core();
  double l[3] = {0, 0, 0};
  getloadavg(l, 3);
  std::printf("# pool_probe: %d threads, layout %s, FMA peak %.1f GFLOP/s per core, load %.2f %.2f %.2f\n", threads,
              layout.c_str(), peak, l[0], l[1], l[2]);
  std::printf("%-14s %8s | %9s %6s %6s | %-12s | %-14s | %8s %8s\n", "shape", "gap us", "wall us", "%peak", "CPUs",
              "tiles/thread", "1st claim us", "same cpu", "wake us");
  pool.set_stats(true);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1, 1);
  for (const std::string& sh : shapes) {
    long m = 0, k = 0, n = 0;
    if (std::sscanf(sh.c_str(), "%ldx%ldx%ld", &m, &k, &n) != 3 || m < 1 || k < 1 || n < 1) {
      std::fprintf(stderr, "pool_probe: --shapes wants MxKxN items, got '%s'\n", sh.c_str());
      return 2;
    }
    std::vector<float> a(m * k), w(k * n), c(m * n);
    for (auto& x : a) x = dist(rng);
    for (auto& x : w) x = dist(rng);
    kn::PackedBPtr packed;
    if (layout == "packed") packed = kn::pack_b(w.data(), k, true, k, n);
    kn::GemmParams p;
    p.m = m;
    p.n = n;
    p.k = k;
    p.a = a.data();
    p.lda = k;
    p.b = w.data();
    p.trans_b = layout != "xW";
    p.ldb = p.trans_b ? k : n;
    p.c = c.data();
    p.ldc = n;
    p.packed_b = packed.get();
    for (int i = 0; i < 3; ++i) kn::sgemm(p);
    for (long gap : gaps) {
      std::vector<double> wall, cpus, first[rt::RegionStats::kThreads], wake;
      std::vector<double> tiles[rt::RegionStats::kThreads];
      int same_cpu = 0, worker_ran = 0;
      for (int r = 0; r < calls; ++r) {
        if (gap > 0) std::this_thread::sleep_for(std::chrono::microseconds(gap));
        const double c0 = process_cpu_s(), w0 = wall_s();
        kn::sgemm(p);
        const double w1 = wall_s() - w0, c1 = process_cpu_s() - c0;
        const rt::RegionStats st = pool.last_region_stats();
        wall.push_back(w1 * 1e6);
        cpus.push_back(c1 / w1);
        wake.push_back(st.wake_ns / 1e3);
        for (int t = 0; t < std::min(threads, rt::RegionStats::kThreads); ++t) {
          tiles[t].push_back(static_cast<double>(st.by_thread[t]));
          if (st.first_claim_ns[t] >= 0) first[t].push_back(st.first_claim_ns[t] / 1e3);
        }
        if (threads > 1 && st.first_claim_ns[1] >= 0) {
          ++worker_ran;
          if (st.cpu[1] == st.cpu[0]) ++same_cpu;
        }
      }
      const double w = median(wall);
      std::string tl, fl;
      for (int t = 0; t < std::min(threads, rt::RegionStats::kThreads); ++t) {
        char b[32];
        std::snprintf(b, sizeof b, "%s%.0f", t ? "/" : "", median(tiles[t]));
        tl += b;
        std::snprintf(b, sizeof b, "%s%.0f", t ? "/" : "", median(first[t]));
        fl += b;
      }
      char sc[32];
      std::snprintf(sc, sizeof sc, "%d/%d", same_cpu, worker_ran);
      std::printf("%-14s %8ld | %9.0f %5.1f%% %6.2f | %-12s | %-14s | %8s %8.1f\n", sh.c_str(), gap, w,
                  100.0 * 2.0 * m * n * k / (w * 1e-6) / 1e9 / (peak * threads), median(cpus), tl.c_str(), fl.c_str(),
                  sc, median(wake));
      std::fflush(stdout);
    }
  }
  getloadavg(l, 3);
  std::printf("# load at end %.2f %.2f %.2f\n", l[0], l[1], l[2]);
  return 0;
}
