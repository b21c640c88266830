// Internal interface between the portable GEMM frontend (gemm.cc) and the
// per-ISA micro-kernel translation units. Declarations and plain structs only:
// this header is included by files compiled with different target flags, so
// an inline function body here would be an ODR hazard.
//
// Packed layouts (what the micro-kernel streams):
//   A panel: MR rows x kc, stored k-major: panel[k * MR + r] = op(A)[i0 + r, k0 + k]
//   B panel: kc x NR,     stored k-major: panel[k * NR + j] = op(B)[k0 + k, j0 + j]
// Rows/columns beyond the matrix edge are zero-filled, so the kernel always
// runs full MR x NR tiles and only the store is masked.
#pragma once

#include <cstddef>
#include <cstdint>

namespace attnode::kernels::gemm_detail {

// Epilogue of one micro-tile store: C = act(alpha * acc + beta * C + bias).
// beta == 0 means C is not read. `bias` points at the tile's first column or is null.
struct Epilogue {
  float alpha;
  float beta;
  const float* bias;
  int act;  // kernels::Activation
};

// Full tile: kc x (MR x NR) from packed panels into C (row-major, ldc), storing
// only the top-left m x n (1 <= m <= MR, 1 <= n <= NR).
using MicroKernelFn = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int m, int n,
                               const Epilogue* ep);

// Packs rows [i0, i0 + rows) x k-range [k0, k0 + kc) of op(A) into ceil(rows / MR)
// consecutive A panels at dst. A is row-major with row stride lda; trans means
// op(A)[i, k] = A[k * lda + i].
using PackAFn = void (*)(const float* a, int64_t lda, bool trans, int64_t i0, int64_t rows, int64_t k0, int64_t kc,
                         float* dst);

// Packs columns [j0, j0 + cols) x k-range of op(B) into ceil(cols / NR) B panels.
// trans means op(B)[k, j] = B[j * ldb + k] (PyTorch Linear weight layout).
using PackBFn = void (*)(const float* b, int64_t ldb, bool trans, int64_t k0, int64_t kc, int64_t j0, int64_t cols,
                         float* dst);

// Row-vector times matrix for M == 1 (decode): for j in [j0, j1),
// c[j] = act(alpha * sum_k x[k] * op(B)[k, j] + beta * c[j] + bias[j]).
// x is contiguous (length k). Packing would cost more than the product here.
using GemvFn = void (*)(int64_t k, const float* x, const float* b, int64_t ldb, bool trans_b, int64_t j0, int64_t j1,
                        float* c, const Epilogue* ep);

struct IsaKernels {
  int mr;
  int nr;
  MicroKernelFn kernel;
  PackAFn pack_a;  // null: the frontend's generic packer
  PackBFn pack_b;  // null: the frontend's generic packer
  GemvFn gemv;     // null: the frontend's generic GEMV
};

// Scalar epilogue over one row: c[j] = act(alpha * acc[j] + beta * c[j] + bias[j])
// for j < n, exact erf GELU. Defined in ukernel_portable.cc (baseline code);
// used for the portable path, generic GEMV and the AVX2 edge tiles.
void epilogue_row_scalar(const float* acc, float* c, int n, const Epilogue* ep);

// Defined in ukernel_<isa>.cc.
extern const IsaKernels kPortableKernels;
extern const IsaKernels kAvx2Kernels;
extern const IsaKernels kAvx512Kernels;

}  // namespace attnode::kernels::gemm_detail
