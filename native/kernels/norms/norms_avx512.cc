// AVX-512 (F/BW/VL/DQ) + FMA row normalizations. See norms_isa.h.
//
// The target pragma comes before every include, and this TU includes only
// <immintrin.h>, <cstdint>, the SIMD layer (internal linkage) and our
// declaration-only headers: nothing compiled here for AVX-512 can become an
// inline function the linker merges into baseline code (simd/README.md).
// The algorithms are norms_rows.inc and norms_backward.inc, shared with the other SIMD paths.
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma")
// GCC 12 false positives: the intrinsics' _mm*_undefined_*() trips
// -Wmaybe-uninitialized, and lambdas returning vectors (all internal to this
// TU, never crossing an ABI boundary) trip -Wpsabi.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wpsabi"
// The same false positive as -Wmaybe-uninitialized, reported as certain once dsum is inlined into the backward row
// loop (norms_backward.inc).
#pragma GCC diagnostic ignored "-Wuninitialized"

#include <cstdint>

#include "../simd/simd_avx512.h"
#include "norms_isa.h"

namespace attnode::kernels::avx512 {
namespace {
using namespace simd::avx512;

#include "norms_rows.inc"
#include "norms_backward.inc"

}  // namespace attnode::kernels::avx512
