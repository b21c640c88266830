// Micro-benchmark of the layer-op kernels: GB/s (bytes read + written by the
// op, i.e. 8 bytes per element) for softmax / layerNorm / rmsNorm / gelu at a few
// transformer shapes, with 1 and 2 threads, on the active ISA (set
// ATTNODE_ISA=avx2|portable to compare paths). Buffers are allocated and
// touched once up front and reused, because first touch of fresh pages costs
// far more than the kernels themselves. The machine is noisy, so each number
// is the best of several timed batches.
#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <functional>
#include <random>
#include <vector>

#include "../../native/kernels/elementwise/elementwise.h"
#include "../../native/kernels/norms/norms.h"
#include "../../native/kernels/rotary/rotary.h"
#include "../../native/kernels/softmax/softmax.h"
#include "../../native/runtime/cpu_features.h"
#include "../../native/runtime/thread_pool.h"

namespace k = attnode::kernels;
namespace rt = attnode::runtime;

template <typename F>
double best_seconds(F&& f, int64_t elems) {
  // ~2 ms per batch, best of 15 batches.
  int reps = static_cast<int>(std::clamp<int64_t>(20'000'000 / std::max<int64_t>(elems, 1) / 10, 1, 20000));
  f();
  double best = 1e30;
  for (int b = 0; b < 15; ++b) {
    auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < reps; ++r) f();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
    best = std::min(best, s);
  }
  return best;
}

int main() {
  std::printf("isa %s, pool %d threads\n", rt::isa_name(rt::active_isa()), rt::ThreadPool::instance().num_threads());
  const int64_t shapes[][2] = {{128, 768}, {2048, 768}, {8 * 12 * 128, 128}};
  const int64_t max_n = 2048 * 768;
  std::vector<float> x(max_n), y(max_n), g(768, 1.1f), b(768, 0.1f);
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  for (auto& v : x) v = nd(rng);
  std::fill(y.begin(), y.end(), 0.0f);

  std::printf("%-16s %-10s %10s %10s %10s %10s\n", "shape", "op", "1T GB/s", "2T GB/s", "1T us", "2T us");
  for (const auto& s : shapes) {
    const int64_t rows = s[0], cols = s[1], n = rows * cols;
    struct Op {
      const char* name;
      std::function<void()> fn;
    };
    const float* gp = cols == 768 ? g.data() : nullptr;
    const float* bp = cols == 768 ? b.data() : nullptr;
    std::vector<Op> ops = {
        {"softmax", [&] { k::softmax_rows(x.data(), y.data(), rows, cols); }},
        {"layerNorm", [&] { k::layer_norm_rows(x.data(), gp, bp, y.data(), rows, cols, 1e-5f); }},
        {"rmsNorm", [&] { k::rms_norm_rows(x.data(), gp, y.data(), rows, cols, 1e-5f); }},
        {"gelu", [&] { k::gelu(x.data(), y.data(), n, false); }},
        {"gelu_tanh", [&] { k::gelu(x.data(), y.data(), n, true); }},
        {"silu", [&] { k::unary(k::UnaryOp::Silu, x.data(), y.data(), n); }},
        {"tanh", [&] { k::unary(k::UnaryOp::Tanh, x.data(), y.data(), n); }},
        // Reads gate and up: 12 bytes per element, reported at the table's 8 like the others.
        {"siluMul", [&] { k::silu_mul(x.data(), x.data(), y.data(), n); }},
    };
    for (auto& op : ops) {
      double t[2];
      for (int nt = 1; nt <= 2; ++nt) {
        rt::ThreadPool::instance().set_num_threads(nt);
        t[nt - 1] = best_seconds(op.fn, n);
      }
      char label[32];
      std::snprintf(label, sizeof(label), "[%lld,%lld]", (long long)rows, (long long)cols);
      std::printf("%-16s %-10s %10.1f %10.1f %10.1f %10.1f\n", label, op.name, 8.0 * n / t[0] / 1e9,
                  8.0 * n / t[1] / 1e9, t[0] * 1e6, t[1] * 1e6);
    }
  }

  // RoPE: tokens x heads x D rotated per call (cos/sin table included), at
  // Llama-7B's q shape (32 heads x 128) for a 512-token prefill and a batch-8
  // decoding step, contiguous and in place on the k heads of a packed QKV row.
  std::printf("\nrope [N, L, H, D] (GB/s: 8 bytes per element; table of L positions built per call)\n");
  std::printf("%-30s %10s %10s %10s %10s\n", "shape", "1T GB/s", "2T GB/s", "1T us", "2T us");
  struct RopeShape {
    int64_t n, l, h, d;
    bool packed_in_place, interleaved;
  };
  const RopeShape rshapes[] = {{1, 512, 32, 128, false, false}, {1, 512, 32, 128, false, true},
                               {1, 512, 32, 128, true, false},  {8, 1, 32, 128, false, false},
                               {1, 2048, 8, 64, false, false}};
  for (const RopeShape& s : rshapes) {
    const int64_t e = s.h * s.d, row = s.packed_in_place ? 3 * e : e, n = s.n * s.l * e;
    std::vector<float> rx(s.n * s.l * row), ry(n);
    for (auto& v : rx) v = nd(rng);
    std::vector<int32_t> pos(s.l);
    for (int64_t i = 0; i < s.l; ++i) pos[i] = static_cast<int32_t>(100 + i);
    std::vector<float> inv(s.d / 2);
    for (int64_t i = 0; i < s.d / 2; ++i) inv[i] = 1.0f / std::pow(10000.0f, 2.0f * i / s.d);
    k::RopeParams p;
    p.x = rx.data() + (s.packed_in_place ? e : 0);
    p.y = s.packed_in_place ? rx.data() + e : ry.data();
    p.batch = s.n;
    p.seq = s.l;
    p.heads = s.h;
    p.dim = p.rotary_dim = s.d;
    const int64_t xs[3] = {s.l * row, row, s.d}, ys[3] = {s.l * e, e, s.d};
    std::copy(xs, xs + 3, p.x_strides);
    if (s.packed_in_place) {
      std::copy(xs, xs + 3, p.y_strides);
    } else {
      std::copy(ys, ys + 3, p.y_strides);
    }
    p.positions = pos.data();
    p.inv_freq = inv.data();
    p.interleaved = s.interleaved;
    double t[2];
    for (int nt = 1; nt <= 2; ++nt) {
      rt::ThreadPool::instance().set_num_threads(nt);
      t[nt - 1] = best_seconds([&] { k::rope(p); }, n);
    }
    char label[64];
    std::snprintf(label, sizeof(label), "[%lld,%lld,%lld,%lld]%s%s", (long long)s.n, (long long)s.l, (long long)s.h,
                  (long long)s.d, s.interleaved ? " interleaved" : "", s.packed_in_place ? " qkv in-place" : "");
    std::printf("%-30s %10.1f %10.1f %10.1f %10.1f\n", label, 8.0 * n / t[0] / 1e9, 8.0 * n / t[1] / 1e9, t[0] * 1e6,
                t[1] * 1e6);
  }
  return 0;
}
