// Micro-benchmark of the fused attention kernel alone at the long-sequence MHA
// shapes of bench:encoder's mha-s2048 / mha-s4096 cases (issue 18): d_model
// 512, 8 heads of 64, batch 1, float32, q / k / v read where multi-head
// attention leaves them (column blocks of one packed [L, 3E] projection,
// position stride 3E) and out written into [L, E].
//
// Prints, per (seq, threads), the median and best time of a call over
// `--reps` calls, GFLOP/s (4·H·L²·d) and the percentage of the 1-core FMA
// peak (bench/gemm/fma_peak.h) × threads. At 1 thread the time is the
// calling thread's CPU time (the kernel runs on it), so time spent
// descheduled on a shared machine does not count; at 2 threads it is the
// wall time (another thread's share cannot be read per call), so on a
// loaded machine only the 1-thread figures compare between runs, and two
// builds are compared by interleaving their runs (bench/layer_ops/
// attention_long.sh).
//
// Usage: bench_attention_long [--seq 2048,4096] [--threads 1,2] [--reps 5] [--layout mha|heads]
//   layout heads: q, k, v, out contiguous [H, L, d] (no K/V copy in the frontend).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "kernels/attention/attention.h"  // -I <native root>: this tree or the baseline (attention_long.sh)
#include "runtime/cpu_features.h"
#include "runtime/thread_pool.h"
#include "../gemm/fma_peak.h"

namespace k = attnode::kernels;
namespace rt = attnode::runtime;

namespace {

double thread_cpu_s() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

double wall_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::vector<int64_t> parse_list(const char* s) {
  std::vector<int64_t> out;
  for (const char* p = s; *p;) {
    char* end = nullptr;
    out.push_back(std::strtoll(p, &end, 10));
    if (end == p) break;
    p = *end == ',' ? end + 1 : end;
  }
  return out;
}

double load1() {
  double l = -1;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &l) != 1) l = -1;
    std::fclose(f);
  }
  return l;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> seqs = {2048, 4096}, threads = {1, 2};
  int reps = 5;
  std::string layout = "mha";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--seq")) seqs = parse_list(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--threads")) threads = parse_list(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--reps")) reps = std::max(1, std::atoi(argv[i + 1]));
    else if (!std::strcmp(argv[i], "--layout")) layout = argv[i + 1];
    else {
      std::fprintf(stderr, "unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  const int64_t h = 8, d = 64, e = h * d;
  const double peak = attnode_bench::measure_fma_peak_1core();
  std::printf("isa %s, layout %s, FMA peak %.1f GFLOP/s/core, load %.2f\n", rt::isa_name(rt::active_isa()),
              layout.c_str(), peak, load1());
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  for (int64_t l : seqs) {
    const bool mha = layout == "mha";
    std::vector<float> qkv(l * 3 * e), out(l * e);
    for (auto& x : qkv) x = nd(rng);
    k::AttentionParams p;
    if (mha) {
      p.q = qkv.data();
      p.k = qkv.data() + e;
      p.v = qkv.data() + 2 * e;
      const int64_t s[3] = {3 * e, d, 3 * e}, so[3] = {e, d, e};
      std::copy(s, s + 3, p.q_strides);
      std::copy(s, s + 3, p.k_strides);
      std::copy(s, s + 3, p.v_strides);
      std::copy(so, so + 3, p.out_strides);
    } else {
      p.q = qkv.data();
      p.k = qkv.data() + l * e;
      p.v = qkv.data() + 2 * l * e;
      const int64_t s[3] = {l * e, l * d, d};
      std::copy(s, s + 3, p.q_strides);
      std::copy(s, s + 3, p.k_strides);
      std::copy(s, s + 3, p.v_strides);
      std::copy(s, s + 3, p.out_strides);
    }
    p.out = out.data();
    p.batch = 1;
    p.heads = h;
    p.lq = p.lk = l;
    p.dk = p.dv = d;
    p.scale = 0.125f;
    const double flops = 4.0 * h * l * l * d;
    for (int64_t nt : threads) {
      rt::ThreadPool::instance().set_num_threads(static_cast<int>(nt));
      k::attention(p, static_cast<int>(nt));  // warm: scratch, pages, pool
      std::vector<double> ts;
      for (int r = 0; r < reps; ++r) {
        const double c0 = thread_cpu_s(), w0 = wall_s();
        k::attention(p, static_cast<int>(nt));
        ts.push_back(nt == 1 ? thread_cpu_s() - c0 : wall_s() - w0);
      }
      std::sort(ts.begin(), ts.end());
      const double med = ts[ts.size() / 2], best = ts[0];
      std::printf("seq %5lld  %lldT  median %8.2f ms  best %8.2f ms  %6.1f GFLOP/s  %5.1f%% of peak  (%s)  load %.2f\n",
                  (long long)l, (long long)nt, med * 1e3, best * 1e3, flops / med / 1e9,
                  100.0 * flops / med / 1e9 / (peak * nt), nt == 1 ? "thread CPU time" : "wall time", load1());
      std::fflush(stdout);
    }
  }
  return 0;
}
