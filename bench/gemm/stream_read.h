// A sequential read of n floats with four accumulators, optionally prefetching `Dist` bytes ahead: the
// bandwidth probe stream_bench.cc and decode_gemv_bench.cc both time.
#pragma once

#include <immintrin.h>

#include <cstddef>

template <int Dist = 0>
__attribute__((target("avx512f"))) static float read_sequential(const float* a, size_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  const char* c = reinterpret_cast<const char*>(a);
  for (size_t i = 0; i + 64 <= n; i += 64) {
    if constexpr (Dist > 0) {
      _mm_prefetch(c + 4 * i + Dist, _MM_HINT_T0);
      _mm_prefetch(c + 4 * i + Dist + 64, _MM_HINT_T0);
      _mm_prefetch(c + 4 * i + Dist + 128, _MM_HINT_T0);
      _mm_prefetch(c + 4 * i + Dist + 192, _MM_HINT_T0);
    }
    s0 = _mm512_add_ps(s0, _mm512_load_ps(a + i));
    s1 = _mm512_add_ps(s1, _mm512_load_ps(a + i + 16));
    s2 = _mm512_add_ps(s2, _mm512_load_ps(a + i + 32));
    s3 = _mm512_add_ps(s3, _mm512_load_ps(a + i + 48));
  }
  (void)c;
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}
