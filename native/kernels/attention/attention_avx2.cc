// AVX2 + FMA attention tile kernel. See attention_isa.h.
//
// The target pragma comes before every include and this TU includes only
// <immintrin.h>, <cstdint>, the SIMD layer (internal linkage) and our
// declaration-only headers: an inline function emitted here would carry AVX2
// code that the linker could pick for baseline callers (ODR hazard;
// simd/README.md). All helpers are in an anonymous namespace for the same
// reason. The algorithm is attention_tile.inc, written against the SIMD layer.
#pragma GCC target("avx2,fma")
// GCC 12 false positives (see attention_avx512.cc).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wpsabi"

#include <immintrin.h>

#include <cstdint>

#include "../simd/simd_avx2.h"
#include "attention_isa.h"

namespace attnode::kernels::avx2 {
namespace {

using namespace simd::avx2;

constexpr int kR = 2;  // keys per score micro-tile: 2 keys x 4 vectors of queries (+4 loads: 16 ymm registers)

#include "attention_tile.inc"
#include "attention_backward.inc"

}  // namespace attnode::kernels::avx2
