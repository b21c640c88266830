// Portable (baseline) attention tile kernel. See attention_isa.h.
//
// The algorithm section is shared text with the SIMD files, instantiated
// here with the portable SIMD layer's one-lane "vector" (plain float) and
// libm's expf, so it is also a readable reference of what they compute.
#include <cmath>
#include <cstdint>

#include "../simd/simd_portable.h"
#include "attention_isa.h"

namespace attnode::kernels::portable {
namespace {

using namespace simd::portable;

constexpr int kR = 1;  // keys per score micro-tile (32 scalar accumulators)

#include "attention_tile.inc"
#include "attention_backward.inc"

}  // namespace attnode::kernels::portable
