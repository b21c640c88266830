// AVX2 + FMA row normalizations. See norms_isa.h.
//
// The target pragma comes before every include, and this TU includes only
// <immintrin.h>, <cstdint>, the SIMD layer (internal linkage) and our
// declaration-only headers: nothing compiled here for AVX2 can become an
// inline function the linker merges into baseline code (simd/README.md).
// The algorithms are norms_rows.inc and norms_backward.inc, shared with the other SIMD paths.
#pragma GCC target("avx2,fma")
// GCC 12 false positives: the intrinsics' _mm*_undefined_*() trips
// -Wmaybe-uninitialized, and lambdas returning vectors (all internal to this
// TU, never crossing an ABI boundary) trip -Wpsabi.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wpsabi"

#include <cstdint>

#include "../simd/simd_avx2.h"
#include "norms_isa.h"

namespace attnode::kernels::avx2 {
namespace {
using namespace simd::avx2;

#include "norms_rows.inc"
#include "norms_backward.inc"

}  // namespace attnode::kernels::avx2
