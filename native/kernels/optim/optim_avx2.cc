// avx2 fused optimizer updates. See optim_isa.h; the algorithm is optim_update.inc.
//
// The target pragma comes before every include, and this TU includes only
// <cstdint>, the SIMD layer (internal linkage) and our declaration-only
// headers (simd/README.md). fp-contract=off: only the explicit fmadd calls
// fuse, where ATen's vectorised kernels use vec::fmadd (see optim.h).
#pragma GCC target("avx2,fma")
#pragma GCC optimize("fp-contract=off")
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wpsabi"

#include <cstdint>

#include "../simd/simd_avx2.h"
#include "optim_isa.h"

namespace attnode::kernels::avx2 {
namespace {
using namespace simd::avx2;

inline V fmadd(V a, V b, V c) { return fma(a, b, c); }

#include "optim_update.inc"

}  // namespace attnode::kernels::avx2
