// AVX-512 (F/BW/VL/DQ) + FMA losses. See loss_isa.h.
//
// The target pragma comes before every include, and this TU includes only
// <immintrin.h>, <cstdint>, the SIMD layer (internal linkage) and our
// declaration-only headers: nothing compiled here for this ISA can become an
// inline function the linker merges into baseline code (simd/README.md).
// The algorithm is loss_rows.inc, shared with the other SIMD paths.
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma")
// GCC 12 false positives: the intrinsics' _mm*_undefined_*() trips
// -Wmaybe-uninitialized, and lambdas returning vectors (all internal to this
// TU, never crossing an ABI boundary) trip -Wpsabi.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wpsabi"

#include <cstdint>

#include "../simd/simd_avx512.h"
#include "loss_isa.h"

namespace attnode::kernels::avx512 {
namespace {
using namespace simd::avx512;

#include "loss_rows.inc"

}  // namespace attnode::kernels::avx512
