// Read bandwidth of one large buffer (the decode step's weight stream) on 4 KiB pages against 2 MiB transparent
// huge pages (madvise(MADV_HUGEPAGE)), with several read-loop shapes, 1 and 2 threads, interleaved rounds,
// median of the rounds. Usage: bench/gemm/stream.sh [MiB] [rounds]
#include <immintrin.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#include "stream_read.h"

static double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

static float* map(size_t bytes, bool huge) {
  constexpr size_t kHuge = size_t{2} << 20;
  void* p = mmap(nullptr, bytes + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) std::abort();
  char* a = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1));
  madvise(a, bytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  float* f = reinterpret_cast<float*>(a);
  for (size_t i = 0; i < bytes / 4; ++i) f[i] = static_cast<float>(i % 1000) * 1e-5f;
  return f;
}

// S interleaved streams over S equal parts of the range.
template <int S>
__attribute__((target("avx512f"))) static float read_streams(const float* a, size_t n) {
  const size_t part = n / S / 64 * 64;
  __m512 s[S];
  for (int q = 0; q < S; ++q) s[q] = _mm512_setzero_ps();
  for (size_t i = 0; i + 64 <= part; i += 64) {
#pragma GCC unroll 8
    for (int q = 0; q < S; ++q) {
      const float* b = a + q * part + i;
      s[q] = _mm512_add_ps(s[q], _mm512_add_ps(_mm512_add_ps(_mm512_load_ps(b), _mm512_load_ps(b + 16)),
                                               _mm512_add_ps(_mm512_load_ps(b + 32), _mm512_load_ps(b + 48))));
    }
  }
  __m512 t = s[0];
  for (int q = 1; q < S; ++q) t = _mm512_add_ps(t, s[q]);
  return _mm512_reduce_add_ps(t);
}

using ReadFn = float (*)(const float*, size_t);

// GB/s reading `n` floats at `a` split over `nt` threads (contiguous halves).
static double measure(ReadFn f, const float* a, size_t n, int nt) {
  std::atomic<float> sink{0};
  const double t0 = now();
  if (nt == 1) {
    sink = f(a, n);
  } else {
    std::vector<std::thread> th;
    const size_t part = n / nt / 4096 * 4096;
    for (int t = 0; t < nt; ++t)
      th.emplace_back([&, t] { sink = sink + f(a + t * part, t + 1 == nt ? n - t * part : part); });
    for (auto& x : th) x.join();
  }
  const double s = now() - t0;
  (void)sink.load();
  return 4.0 * n / s / 1e9;
}

int main(int argc, char** argv) {
  const size_t mib = argc > 1 ? std::atoi(argv[1]) : 512;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 7;
  const size_t bytes = mib << 20, n = bytes / 4;
  float* small = map(bytes, false);
  float* huge = map(bytes, true);
  struct K {
    const char* name;
    ReadFn f;
  } ks[] = {{"plain", read_sequential<0>},    {"pf+1K", read_sequential<1024>}, {"pf+4K", read_sequential<4096>},
            {"pf+8K", read_sequential<8192>}, {"2 streams", read_streams<2>},   {"4 streams", read_streams<4>},
            {"8 streams", read_streams<8>}};
  for (int nt : {1, 2}) {
    for (const K& k : ks) {
      std::vector<double> r4, r2;
      for (int r = 0; r < rounds; ++r) {
        if (r % 2) {
          r4.push_back(measure(k.f, small, n, nt));
          r2.push_back(measure(k.f, huge, n, nt));
        } else {
          r2.push_back(measure(k.f, huge, n, nt));
          r4.push_back(measure(k.f, small, n, nt));
        }
      }
      std::sort(r4.begin(), r4.end());
      std::sort(r2.begin(), r2.end());
      std::printf("%d thread(s) %-10s 4K pages %5.1f GB/s (best %5.1f) | 2M pages %5.1f GB/s (best %5.1f)\n", nt,
                  k.name, r4[r4.size() / 2], r4.back(), r2[r2.size() / 2], r2.back());
    }
  }
  FILE* f = std::fopen("/proc/self/smaps_rollup", "r");
  char line[256];
  while (f && std::fgets(line, sizeof line, f))
    if (std::strstr(line, "AnonHugePages")) std::fputs(line, stdout);
  if (f) std::fclose(f);
}
