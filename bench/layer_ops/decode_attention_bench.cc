// The attention of a whole SmolLM-135M decode step (30 layers, 9 query heads sharing 3 key/value heads of 64,
// one query row) as the replayed step runs it: per layer a KV cache of rows [key heads | value heads]
// (2 x 192 floats) read through kernels::attention's pooled form (kv_starts / kv_lengths), `lk` keys visible.
// Cold, as in decode (the step's weights stream through the caches between two tokens): a 64 MB read, untimed,
// before each step. Against a plain read of the same rows (cold too), interleaved rounds, median ms per step and
// GB/s of cache bytes; "warm" skips the eviction (the caches then mostly come from L3).
// Usage: bench/layer_ops/decode_attention.sh [lk] [rounds] [warm]
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "../../native/kernels/attention/attention.h"
#include "../../native/runtime/thread_pool.h"
#include "../gemm/stream_read.h"

using namespace attnode::kernels;
namespace rt = attnode::runtime;

static double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// This thread's CPU time: at 1 thread all the work, and less inflated than wall time on a shared machine.
static double cpu_now() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char** argv) {
  const int64_t lk = argc > 1 ? std::atoll(argv[1]) : 640;
  const int nt = argc > 2 ? std::atoi(argv[2]) : 1;
  const int rounds = argc > 3 ? std::atoi(argv[3]) : 15;
  const bool warm = argc > 4 && std::string(argv[4]) == "warm";
  const int layers = 30, heads = 9, kv_heads = 3, d = 64, kv_dim = kv_heads * d, row = 2 * kv_dim;
  rt::ThreadPool::instance().set_num_threads(nt);
  std::vector<std::vector<float>> cache(layers, std::vector<float>(static_cast<size_t>(lk) * row));
  for (auto& c : cache)
    for (size_t i = 0; i < c.size(); ++i) c[i] = static_cast<float>((i * 2654435761u) % 2001) * 1e-3f - 1.0f;
  std::vector<float> q(heads * d, 0.05f), out(heads * d);
  const int32_t start = 0, len = static_cast<int32_t>(lk);
  auto step = [&] {
    for (int l = 0; l < layers; ++l) {
      AttentionParams p;
      p.q = q.data();
      p.k = cache[l].data();
      p.v = cache[l].data() + kv_dim;
      p.out = out.data();
      p.q_strides[0] = heads * d, p.q_strides[1] = d, p.q_strides[2] = d;
      p.k_strides[0] = 0, p.k_strides[1] = d, p.k_strides[2] = row;
      p.v_strides[0] = 0, p.v_strides[1] = d, p.v_strides[2] = row;
      p.out_strides[0] = heads * d, p.out_strides[1] = d, p.out_strides[2] = d;
      p.batch = 1, p.heads = heads, p.kv_heads = kv_heads, p.lq = 1, p.lk = lk, p.dk = d, p.dv = d;
      p.scale = 0.125f;
      p.kv_starts = &start;
      p.kv_lengths = &len;
      attention(p, nt);
    }
  };
  const size_t evict_floats = (64u << 20) / 4;
  std::vector<float> evict(evict_floats, 1e-6f);
  volatile float sink = 0;
  auto cold = [&] {
    if (!warm) sink = sink + read_sequential(evict.data(), evict_floats);
  };
  std::vector<double> ta, tr, ca, cr;
  step();
  for (int r = 0; r < rounds; ++r) {
    for (int v = 0; v < 2; ++v) {
      cold();
      const double t0 = now(), c0 = cpu_now();
      if ((v + r) % 2 == 0) {
        step();
        ta.push_back(now() - t0);
        ca.push_back(cpu_now() - c0);
      } else {
        for (int l = 0; l < layers; ++l) sink = sink + read_sequential(cache[l].data(), cache[l].size() / 64 * 64);
        tr.push_back(now() - t0);
        cr.push_back(cpu_now() - c0);
      }
    }
  }
  for (auto* v : {&ta, &tr, &ca, &cr}) std::sort(v->begin(), v->end());
  const double bytes = 4.0 * layers * lk * row;
  const size_t m = ta.size() / 2;
  std::printf(
      "decode attention, %d layers x %ld keys (%.1f MB of K/V, %s), %d thread(s), median of %d: %.3f ms (%.1f GB/s; "
      "main thread CPU %.3f ms) | plain read %.3f ms (%.1f GB/s; CPU %.3f ms)\n",
      layers, static_cast<long>(lk), bytes / 1e6, warm ? "warm" : "cold", nt, rounds, ta[m] * 1e3, bytes / ta[m] / 1e9,
      ca[m] * 1e3, tr[m] * 1e3, bytes / tr[m] / 1e9, cr[m] * 1e3);
}
