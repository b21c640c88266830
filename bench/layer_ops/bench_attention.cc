// Micro-benchmark of the fused attention kernel: GFLOP/s (4 * B*H*Lq*Lk*D,
// halved for causal) at a few shapes, 1 and 2 threads, active ISA (set
// ATTNODE_ISA to compare). Buffers are allocated once and reused; each number
// is the best of several timed batches (the machine is noisy).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#include "../../native/kernels/attention.h"
#include "../../native/runtime/cpu_features.h"
#include "../../native/runtime/thread_pool.h"

namespace k = attnode::kernels;
namespace rt = attnode::runtime;

int main() {
  struct Shape {
    int64_t b, h, l, d;
    bool causal, weights;
  };
  const Shape shapes[] = {{1, 12, 128, 64, false, false}, {8, 12, 128, 64, false, false},
                          {1, 12, 512, 64, false, false}, {1, 12, 512, 64, true, false},
                          {1, 12, 128, 64, false, true},  {1, 12, 1, 64, false, false}};
  std::printf("isa %s\n%-34s %10s %10s %10s %10s\n", rt::isa_name(rt::active_isa()), "shape [B,H,L,D]", "1T GF/s",
              "2T GF/s", "1T us", "2T us");
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
    const double flops = 4.0 * s.b * s.h * s.l * lk * s.d * (s.causal ? 0.5 : 1.0);
    double t[2];
    for (int nt = 1; nt <= 2; ++nt) {
      rt::ThreadPool::instance().set_num_threads(nt);
      const int reps = static_cast<int>(std::clamp(2e7 / flops, 1.0, 5000.0));
      k::attention(p);
      double best = 1e30;
      for (int batch = 0; batch < 10; ++batch) {
        auto t0 = std::chrono::steady_clock::now();
        for (int r = 0; r < reps; ++r) k::attention(p);
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps);
      }
      t[nt - 1] = best;
    }
    char label[64];
    std::snprintf(label, sizeof(label), "[%lld,%lld,%lld,%lld]%s%s%s", (long long)s.b, (long long)s.h, (long long)s.l,
                  (long long)s.d, s.l == 1 ? " lk=128" : "", s.causal ? " causal" : "", s.weights ? " +weights" : "");
    std::printf("%-34s %10.1f %10.1f %10.1f %10.1f\n", label, flops / t[0] / 1e9, flops / t[1] / 1e9, t[0] * 1e6,
                t[1] * 1e6);
  }
  return 0;
}
