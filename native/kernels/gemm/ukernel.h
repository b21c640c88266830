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
  // Not part of the store: `prefetch_lines` 64-byte lines from `prefetch`
  // that the kernel may pull into cache during its k loop (the next packed
  // B block; kernels that do not prefetch ignore them). Never changes results.
  const char* prefetch = nullptr;
  int prefetch_lines = 0;
  // Strided regions (the rows of an unpacked B the next pack will read), for
  // the fp32 kernels: after `prefetch_run_left` lines, and then after every
  // `prefetch_run` lines, the address also skips `prefetch_skip` bytes.
  // prefetch_run_left == 0: the lines are contiguous (the bf16 kernel reads
  // only that form).
  int prefetch_run = 0;
  int prefetch_run_left = 0;
  int64_t prefetch_skip = 0;
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

// M == 1 against a pre-packed fp32 op(B) (kernels::pack_b: for each K block
// starting at k0, every block but the last kc deep, all ceil(n / NR) panels of
// that block, each min(kc, k - k0) deep):
//   block(k0, panel q) = packed + k0 * ceil(n / NR) * NR + q * min(kc, k - k0) * NR.
// For j in [j0, j1), j0 a multiple of NR, c[j] = act(alpha * sum_k x[k] * op(B)[k, j] + beta * c[j] + bias[j]).
// The packed panels are one sequential stream per K block, where the
// unpacked GEMV reads NR-row groups of B through strides: decode streams its
// weights from memory, and the sequential stream is what the prefetchers
// keep full.
using PackedGemvFn = void (*)(int64_t k, int64_t kc, const float* x, const float* packed, int64_t n, int64_t j0,
                              int64_t j1, float* c, const Epilogue* ep);

// As MicroKernelFn, with A read in place: row r of the tile's A is
// a + r * lda, k contiguous (op(A) not transposed). Rows r >= m are not read.
using MicroKernelRowsFn = void (*)(int64_t kc, const float* a, int64_t lda, const float* b, float* c, int64_t ldc,
                                   int m, int n, const Epilogue* ep);

// A non-transposed B read in place: row k of the panel at b + k * ldb, its NR columns contiguous and all inside
// the matrix (the caller packs a panel that would run past the last column). A is a packed panel when lda == 0,
// else MR rows read in place as for MicroKernelRowsFn. The same FMAs in the same order as MicroKernelFn on the
// packed copies: bit-identical results.
using MicroKernelStridedBFn = void (*)(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                                       int64_t ldc, int m, int n, const Epilogue* ep);

struct IsaKernels {
  int mr;
  int nr;
  MicroKernelFn kernel;
  PackAFn pack_a;            // null: the frontend's generic packer
  PackBFn pack_b;            // null: the frontend's generic packer
  GemvFn gemv;               // null: the frontend's generic GEMV
  PackedGemvFn gemv_packed;  // null: M == 1 reads the unpacked B even when a packed copy exists
  // null: A is always packed. Must give the same bits as `kernel` on the packed copy.
  MicroKernelRowsFn kernel_rows = nullptr;
  // null: B is always packed. Must give the same bits as `kernel` on the packed copy.
  MicroKernelStridedBFn kernel_strided_b = nullptr;
};

// ---- bf16 weights (AVX512-BF16) ----
//
// Operands are bf16 pairs: one 32-bit word holds two consecutive k of one
// row/column, the even k in the low half, the odd k in the high half (K is
// padded to even with zeros). That is the operand format of vdpbf16ps, which
// multiplies pairs lane by lane and adds both products into an fp32 lane.
//   A panel: MR rows x kp pairs, pair-major: panel[p * MR + r] = pair(op(A)[i0 + r, k0 + 2p], op(A)[i0 + r, k0 + 2p +
//   1]) B panel: kp pairs x NR,     pair-major: panel[p * NR + j] = pair(op(B)[k0 + 2p, j0 + j], op(B)[k0 + 2p + 1, j0
//   + j])
// so one k-pair of a B panel is NR words (NR / 16 zmm) and the micro-kernel
// broadcasts one A word per row against them. Out-of-range rows, columns and
// the odd K tail are zero. fp32 -> bf16 is round-to-nearest-even (the
// vcvtne*ps2bf16 instructions: denormal inputs and outputs flush to zero).
//
// Packed op(B) (kernels::pack_b_bf16): for each K block starting at pair bp
// (every block but the last is kcp pairs deep), all ceil(n / NR) panels of
// that block, each min(kcp, kp - bp) pairs deep:
//   block(bp, panel q) = data + bp * ceil(n / NR) * NR + q * min(kcp, kp - bp) * NR.

// kp pairs of packed A and B into an MR x NR tile of C (fp32 accumulation),
// stored through the same epilogue as the fp32 kernels.
using Bf16MicroKernelFn = void (*)(int64_t kp, const uint32_t* a, const uint32_t* b, float* c, int64_t ldc, int m,
                                   int n, const Epilogue* ep);

// As PackAFn / PackBFn, writing bf16 pair panels: kc k values from k0 (k0
// even) become ceil(kc / 2) pairs per row/column.
using Bf16PackAFn = void (*)(const float* a, int64_t lda, bool trans, int64_t i0, int64_t rows, int64_t k0, int64_t kc,
                             uint32_t* dst);
using Bf16PackBFn = void (*)(const float* b, int64_t ldb, bool trans, int64_t k0, int64_t kc, int64_t j0, int64_t cols,
                             uint32_t* dst);

// Converts x[0, k) to ceil(k / 2) bf16 pairs (the GEMV's row vector).
using Bf16PackXFn = void (*)(const float* x, int64_t k, uint32_t* dst);

// M == 1 against a packed bf16 op(B) (layout above; kp pairs in blocks of
// kcp, n columns): for j in [j0, j1), j0 a multiple of NR,
// c[j] = act(alpha * sum_k x[k] * op(B)[k, j] + beta * c[j] + bias[j]).
using Bf16GemvFn = void (*)(int64_t kp, int64_t kcp, const uint32_t* x, const uint32_t* packed, int64_t n, int64_t j0,
                            int64_t j1, float* c, const Epilogue* ep);

struct Bf16Kernels {
  int mr;
  int nr;
  Bf16MicroKernelFn kernel;
  Bf16PackAFn pack_a;
  Bf16PackBFn pack_b;
  Bf16PackXFn pack_x;
  Bf16GemvFn gemv;
};

// Scalar epilogue over one row: c[j] = act(alpha * acc[j] + beta * c[j] + bias[j])
// for j < n, exact erf GELU. Defined in ukernel_portable.cc (baseline code);
// used for the portable path, generic GEMV and the AVX2 edge tiles.
void epilogue_row_scalar(const float* acc, float* c, int n, const Epilogue* ep);

// Defined in ukernel_<isa>.cc.
extern const IsaKernels kPortableKernels;
extern const IsaKernels kAvx2Kernels;
extern const IsaKernels kAvx512Kernels;
// ukernel_avx512_bf16.cc: only called when the CPU has AVX512-BF16 and the
// active path is avx512 (kernels::bf16_gemm_available()).
extern const Bf16Kernels kAvx512Bf16Kernels;

}  // namespace attnode::kernels::gemm_detail
