// Portable (baseline x86-64) RoPE rows: rotary_rows.inc over the one-lane
// SIMD layer. See rotary_isa.h. fp-contract=off as on the other paths (a
// baseline build has no FMA, but another target might).
#pragma GCC optimize("fp-contract=off")

#include <cstdint>

#include "../simd/simd_portable.h"
#include "rotary_isa.h"

namespace attnode::kernels::portable {
namespace {
using namespace simd::portable;

#include "rotary_rows.inc"

}  // namespace attnode::kernels::portable
