// Micro-benchmark of the fused attention kernel against a same-run GEMM.
//
// GFLOP/s of attention (4 * B*H*Lq*Lk*D, halved for causal) at a few shapes,
// 1 and 2 threads, active ISA (set ATTNODE_ISA to compare), next to the
// GFLOP/s of a 2048x2048x64 sgemm (the Q·Kᵀ shape of one long-sequence head,
// kernels::sgemm) timed right before it with the same thread count, and the
// ratio attention / GEMM. The machine is shared and noisy: the ratio is the
// number to compare between runs. Buffers are allocated once and reused;
// each number is the best of several timed batches.
//
// Usage: bench_attention [--quick]   (--quick: fewer batches)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "../../native/kernels/attention/attention.h"
#include "../../native/kernels/gemm/gemm.h"
#include "../../native/runtime/cpu_features.h"
#include "../../native/runtime/thread_pool.h"

namespace k = attnode::kernels;
namespace rt = attnode::runtime;

namespace {

int g_batches = 10;

template <typename F>
double best_seconds(double flops, F&& f) {
  const int reps = static_cast<int>(std::clamp(4e8 / flops, 1.0, 5000.0));
  f();
  double best = 1e30;
  for (int batch = 0; batch < g_batches; ++batch) {
    auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < reps; ++r) f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps);
  }
  return best;
}

struct GemmRef {
  std::vector<float> a, b, c;
  k::GemmParams p;
  double flops;
  GemmRef() : a(2048 * 64), b(2048 * 64), c(2048 * 2048) {
    std::mt19937 rng(3);
    std::normal_distribution<float> nd;
    for (auto* v : {&a, &b})
      for (auto& x : *v) x = nd(rng);
    p.m = 2048;
    p.n = 2048;
    p.k = 64;
    p.a = a.data();
    p.lda = 64;
    p.b = b.data();
    p.ldb = 64;
    p.trans_b = true;  // S = Q · Kᵀ with K stored [n, k]
    p.c = c.data();
    p.ldc = 2048;
    flops = 2.0 * 2048 * 2048 * 64;
  }
  double gflops(int nt) {
    return flops / best_seconds(flops, [&] { k::sgemm(p, nt); }) / 1e9;
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--quick") == 0) g_batches = 4;
  struct Shape {
    int64_t b, h, l, d;
    bool causal, weights;
  };
  const Shape shapes[] = {
      {1, 8, 2048, 64, false, false}, {1, 8, 2048, 64, true, false},  {1, 8, 4096, 64, false, false},
      {1, 8, 4096, 64, true, false},  {1, 12, 128, 64, false, false}, {1, 12, 128, 64, true, false},
      {8, 12, 128, 64, false, false}, {8, 12, 128, 64, true, false},  {1, 8, 2048, 128, false, false},
      {1, 12, 512, 64, false, false}, {1, 12, 128, 64, false, true},  {1, 12, 1, 64, false, false}};
  GemmRef gemm;
  std::printf("isa %s; gemm = sgemm 2048x2048x64 (trans_b) timed before each row with the same threads\n",
              rt::isa_name(rt::active_isa()));
  std::printf("%-30s %8s %8s %6s %10s | %8s %8s %6s %10s\n", "shape [B,H,L,D]", "1T GF/s", "gemm", "ratio", "1T us",
              "2T GF/s", "gemm", "ratio", "2T us");
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  for (const Shape& s : shapes) {
    const int64_t lk = s.l == 1 ? 128 : s.l;  // l == 1: one decoding step against 128 cached keys
    std::vector<float> q(s.b * s.h * s.l * s.d), kk(s.b * s.h * lk * s.d), v(kk.size()), o(q.size()),
        w(s.weights ? s.b * s.h * s.l * lk : 0);
    for (auto* vec : {&q, &kk, &v})
      for (auto& x : *vec) x = nd(rng);
    k::AttentionParams p;
    p.q = q.data();
    p.k = kk.data();
    p.v = v.data();
    p.out = o.data();
    const int64_t qs[3] = {s.h * s.l * s.d, s.l * s.d, s.d}, ks[3] = {s.h * lk * s.d, lk * s.d, s.d};
    std::copy(qs, qs + 3, p.q_strides);
    std::copy(qs, qs + 3, p.out_strides);
    std::copy(ks, ks + 3, p.k_strides);
    std::copy(ks, ks + 3, p.v_strides);
    p.batch = s.b;
    p.heads = s.h;
    p.lq = s.l;
    p.lk = lk;
    p.dk = p.dv = s.d;
    p.scale = 0.125f;
    p.causal = s.causal;
    p.weights = s.weights ? w.data() : nullptr;
    // Causal: the visible fraction of the score matrix (j <= i).
    const double frac = s.causal ? (static_cast<double>(s.l) + 1) / (2.0 * s.l) : 1.0;
    const double flops = 4.0 * s.b * s.h * s.l * lk * s.d * frac;
    double t[2], g[2];
    for (int nt = 1; nt <= 2; ++nt) {
      rt::ThreadPool::instance().set_num_threads(nt);
      g[nt - 1] = gemm.gflops(nt);
      t[nt - 1] = best_seconds(flops, [&] { k::attention(p, nt); });
    }
    char label[64];
    std::snprintf(label, sizeof(label), "[%lld,%lld,%lld,%lld]%s%s%s", (long long)s.b, (long long)s.h, (long long)s.l,
                  (long long)s.d, s.l == 1 ? " lk=128" : "", s.causal ? " causal" : "", s.weights ? " +weights" : "");
    const double a1 = flops / t[0] / 1e9, a2 = flops / t[1] / 1e9;
    std::printf("%-30s %8.1f %8.1f %6.2f %10.1f | %8.1f %8.1f %6.2f %10.1f\n", label, a1, g[0], a1 / g[0], t[0] * 1e6,
                a2, g[1], a2 / g[1], t[1] * 1e6);
    std::fflush(stdout);
  }

  // Grouped-query attention, one decoding step (lq = 1) against a KV cache of
  // lk positions, D = 128: 8 query heads reading 2 key/value heads (Llama-style
  // GQA, K/V never repeated) vs 8 full heads. The step is bound by reading
  // K and V: GB/s counts the K/V bytes the step needs (kvHeads * lk * D * 8).
  std::printf("\nGQA decode step (lq=1, D=128), K/V [B, Hkv, lk, D]:\n");
  std::printf("%-30s %10s %10s %10s %10s\n", "shape", "1T us", "2T us", "KV MB", "2T GB/s");
  for (int64_t b : {1, 4}) {
    for (int64_t lk : {512, 2048}) {
      for (int64_t kvh : {8, 2}) {
        const int64_t h = 8, d = 128;
        std::vector<float> q(b * h * d), kk(b * kvh * lk * d), v(kk.size()), o(q.size());
        for (auto* vec : {&q, &kk, &v})
          for (auto& x : *vec) x = nd(rng);
        k::AttentionParams p;
        p.q = q.data();
        p.k = kk.data();
        p.v = v.data();
        p.out = o.data();
        const int64_t qs[3] = {h * d, d, d}, ks[3] = {kvh * lk * d, lk * d, d};
        std::copy(qs, qs + 3, p.q_strides);
        std::copy(qs, qs + 3, p.out_strides);
        std::copy(ks, ks + 3, p.k_strides);
        std::copy(ks, ks + 3, p.v_strides);
        p.batch = b;
        p.heads = h;
        p.kv_heads = kvh;
        p.lq = 1;
        p.lk = lk;
        p.dk = p.dv = d;
        p.scale = 0.088f;
        const double flops = 4.0 * b * h * lk * d;
        double t[2];
        for (int nt = 1; nt <= 2; ++nt) {
          rt::ThreadPool::instance().set_num_threads(nt);
          t[nt - 1] = best_seconds(flops, [&] { k::attention(p, nt); });
        }
        const double kv_bytes = 2.0 * b * kvh * lk * d * 4;
        char label[64];
        std::snprintf(label, sizeof(label), "B=%lld H=8 Hkv=%lld lk=%lld", (long long)b, (long long)kvh, (long long)lk);
        std::printf("%-30s %10.1f %10.1f %10.2f %10.1f\n", label, t[0] * 1e6, t[1] * 1e6, kv_bytes / 1e6,
                    kv_bytes / t[1] / 1e9);
        std::fflush(stdout);
      }
    }
  }
  return 0;
}
