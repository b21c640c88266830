// Picks a family's kernel table for the active kernel path: every frontend
// (softmax, norms, elementwise) keeps one constexpr table of function
// pointers per ISA and asks here which one to use, so the run-time dispatch
// rule is written once.
//
// Inline body: include only from frontends compiled for baseline x86-64,
// never from a per-ISA file (see simd/README.md).
#pragma once

#include "../../runtime/cpu_features.h"

namespace attnode::kernels {

template <class Table>
const Table& for_active_isa(const Table& portable, const Table& avx2, const Table& avx512) {
  switch (runtime::active_isa()) {
    case runtime::Isa::Avx512:
      return avx512;
    case runtime::Isa::Avx2:
      return avx2;
    default:
      return portable;
  }
}

}  // namespace attnode::kernels
