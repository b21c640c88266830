// Portable (baseline x86-64) fused optimizer updates: optim_update.inc over
// the one-lane SIMD layer. See optim_isa.h. Baseline x86-64 has no FMA
// instruction (and std::fma would be a library call per element), so the
// fused multiply-add is evaluated in double and rounded once: the product of
// two floats is exact in double, so this is a true fma up to the rare double
// rounding of the sum.
#pragma GCC optimize("fp-contract=off")

#include <cstdint>

#include "../simd/simd_portable.h"
#include "optim_isa.h"

namespace attnode::kernels::portable {
namespace {
using namespace simd::portable;

inline V fmadd(V a, V b, V c) {
  return static_cast<float>(static_cast<double>(a) * static_cast<double>(b) + static_cast<double>(c));
}

#include "optim_update.inc"

}  // namespace attnode::kernels::portable
