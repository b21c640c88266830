// avx512 RoPE rows. See rotary_isa.h; the algorithm is rotary_rows.inc.
//
// The target pragma comes before every include, and this TU includes only
// <cstdint>, the SIMD layer (internal linkage) and our declaration-only
// headers (simd/README.md). fp-contract=off: products are rounded before
// the sums, as in PyTorch (see rotary_rows.inc).
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma")
#pragma GCC optimize("fp-contract=off")
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wpsabi"

#include <cstdint>

#include "../simd/simd_avx512.h"
#include "rotary_isa.h"

namespace attnode::kernels::avx512 {
namespace {
using namespace simd::avx512;

#include "rotary_rows.inc"

}  // namespace attnode::kernels::avx512
