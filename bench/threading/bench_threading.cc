// Threading microbenchmark: latency of layer ops and GEMM at 1 and 2 pool
// threads, measured side by side (the thread count alternates sample by
// sample, so both see the same machine load). Reports medians per call.
//
// Built by bench/threading/run.sh, against the working tree and (for a
// before/after comparison) against another checkout's sources: it uses only
// the kernel and pool API that both have.
//
// --gap-us G puts G µs of single-threaded busy work (standing in for the JS
// glue between two ops) before every timed call, so that idle workers have
// gone back to sleep and each call pays their wake-up: the case where a
// worker the OS does not schedule promptly hurts most.
//
// Usage: bench_threading [--reps N] [--gap-us G] [--label TEXT]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

// run.sh --baseline compiles this file against an older tree too: before the
// kernels moved into one folder per family they sat flat in native/kernels.
#if __has_include("../../native/kernels/gemm/gemm.h")
#include "../../native/kernels/elementwise/elementwise.h"
#include "../../native/kernels/gemm/gemm.h"
#include "../../native/kernels/norms/norms.h"
#include "../../native/kernels/softmax/softmax.h"
#else
#include "../../native/kernels/gemm.h"
#include "../../native/kernels/layer_ops.h"
#endif
#include "../../native/runtime/cpu_features.h"
#include "../../native/runtime/thread_pool.h"

namespace k = attnode::kernels;
namespace rt = attnode::runtime;

namespace {

using Clock = std::chrono::steady_clock;

struct Case {
  std::string name;
  double work;  // flops (GEMM) or elements (layer ops), for the throughput column
  std::function<void()> fn;
};

std::vector<float> randv(size_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

// Buffers live for the whole run so every sample reuses warm memory.
struct Buffers {
  std::vector<std::vector<float>> keep;
  float* get(size_t n, uint32_t seed) {
    keep.push_back(randv(n, seed));
    return keep.back().data();
  }
};

}  // namespace

int main(int argc, char** argv) {
  int reps = 15;
  double gap_us = 0;
  std::string label = "working tree";
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::atoi(argv[++i]);
    if (!std::strcmp(argv[i], "--gap-us") && i + 1 < argc) gap_us = std::atof(argv[++i]);
    if (!std::strcmp(argv[i], "--label") && i + 1 < argc) label = argv[++i];
  }
  Buffers buf;
  std::vector<Case> cases;
  auto row_op = [&](const char* op, int64_t rows, int64_t cols) {
    const size_t n = static_cast<size_t>(rows * cols);
    float* x = buf.get(n, 1);
    float* y = buf.get(n, 2);
    float* g = buf.get(static_cast<size_t>(cols), 3);
    float* b = buf.get(static_cast<size_t>(cols), 4);
    char name[96];
    std::snprintf(name, sizeof name, "%s [%ldx%ld]", op, (long)rows, (long)cols);
    std::function<void()> fn;
    if (!std::strcmp(op, "softmax")) fn = [=] { k::softmax_rows(x, y, rows, cols); };
    if (!std::strcmp(op, "layerNorm")) fn = [=] { k::layer_norm_rows(x, g, b, y, rows, cols, 1e-5f); };
    if (!std::strcmp(op, "gelu")) fn = [=] { k::gelu(x, y, rows * cols, false); };
    if (!std::strcmp(op, "relu")) fn = [=] { k::relu(x, y, rows * cols); };
    cases.push_back({name, static_cast<double>(n), fn});
  };
  row_op("softmax", 512, 128);
  row_op("softmax", 2048, 128);
  row_op("layerNorm", 128, 768);
  row_op("layerNorm", 128, 3072);
  row_op("layerNorm", 512, 768);
  row_op("gelu", 128, 3072);
  row_op("gelu", 512, 3072);
  row_op("relu", 128, 3072);
  for (int64_t m : {1, 128, 512}) {
    for (auto kn : {std::pair<int64_t, int64_t>{768, 768}, {768, 3072}}) {
      const int64_t kk = kn.first, n = kn.second;
      k::GemmParams p;
      p.m = m;
      p.n = n;
      p.k = kk;
      p.a = buf.get(static_cast<size_t>(m * kk), 5);
      p.lda = kk;
      p.b = buf.get(static_cast<size_t>(n * kk), 6);  // Linear weight [n, k]
      p.ldb = kk;
      p.trans_b = true;
      p.c = buf.get(static_cast<size_t>(m * n), 7);
      p.ldc = n;
      p.bias = buf.get(static_cast<size_t>(n), 8);
      char name[96];
      std::snprintf(name, sizeof name, "linear M=%ld K=%ld N=%ld", (long)m, (long)kk, (long)n);
      cases.push_back({name, 2.0 * m * n * kk, [p] { k::sgemm(p); }});
    }
  }

  auto& pool = rt::ThreadPool::instance();
  std::printf("# %s | cpu: %s | reps %d | gap %.0f us\n", label.c_str(), rt::cpu_info().brand.c_str(), reps, gap_us);
  auto gap = [&] {
    if (gap_us <= 0) return;
    const auto end = Clock::now() + std::chrono::duration<double, std::micro>(gap_us);
    while (Clock::now() < end) {
    }
  };
  std::printf("%-28s %12s %12s %12s %12s %9s %9s\n", "case", "1t med us", "2t med us", "1t p90 us", "2t p90 us",
              "2t/1t", "speedup");
  for (const Case& c : cases) {
    // Calls per sample: ~2 ms of single-thread work, at least 3.
    pool.set_num_threads(1);
    for (int w = 0; w < 3; ++w) c.fn();
    auto t0 = Clock::now();
    c.fn();
    const double one = std::chrono::duration<double>(Clock::now() - t0).count();
    const int calls = std::clamp(static_cast<int>(2e-3 / std::max(one + gap_us * 1e-6, 1e-7)), 3, 2000);
    std::vector<double> per[2];
    for (int r = 0; r < reps; ++r) {
      for (int ti = 0; ti < 2; ++ti) {
        // Alternate which thread count goes first, so a slow drift in the
        // machine load does not favour one of them.
        const int nt = ((r + ti) & 1) + 1;
        pool.set_num_threads(nt);
        for (int w = 0; w < 2; ++w) c.fn();  // new workers: first region, caches
        for (int i = 0; i < calls; ++i) {
          gap();
          auto s = Clock::now();
          c.fn();
          per[nt - 1].push_back(std::chrono::duration<double, std::micro>(Clock::now() - s).count());
        }
      }
    }
    const double m1 = median(per[0]), m2 = median(per[1]);
    std::printf("%-28s %12.1f %12.1f %12.1f %12.1f %9.2f %9.2f\n", c.name.c_str(), m1, m2, quantile(per[0], 0.9),
                quantile(per[1], 0.9), m2 / m1, m1 / m2);
    std::fflush(stdout);
  }
  return 0;
}
