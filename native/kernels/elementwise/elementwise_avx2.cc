// AVX2 + FMA element-wise kernels. See elementwise_isa.h.
//
// The target pragma comes before every include, and this TU includes only
// <immintrin.h>, <cstdint>, the SIMD layer (internal linkage) and our
// declaration-only headers: nothing compiled here for AVX2 can become an
// inline function the linker merges into baseline code (simd/README.md).
// The algorithms are elementwise_map.inc and elementwise_backward.inc, shared with the other SIMD paths.
#pragma GCC target("avx2,fma")
// GCC 12 false positives: the intrinsics' _mm*_undefined_*() trips
// -Wmaybe-uninitialized, and lambdas returning vectors (all internal to this
// TU, never crossing an ABI boundary) trip -Wpsabi.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wpsabi"

#include <cstdint>

#include "../simd/simd_avx2.h"
#include "elementwise_isa.h"

namespace attnode::kernels::avx2 {
namespace {
using namespace simd::avx2;

#include "elementwise_map.inc"
#include "elementwise_backward.inc"
#include "elementwise_random.inc"

}  // namespace attnode::kernels::avx2
