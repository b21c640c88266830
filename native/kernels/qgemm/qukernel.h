// Internal interface between the int8 GEMM frontend (qgemm.cc) and its
// per-ISA kernel files. Declarations and plain structs only (included by
// files compiled with different target flags: no inline bodies).
//
// Packed layouts (int8, four consecutive k of one row/column per 32-bit word:
// the operand format of vpdpbusd and of vpmaddubsw + vpmaddwd):
//   B panel: kq quads x kQNR columns, panel[(q * kQNR + j) * 4 + t] = qw[j0 + j, 4q + t] (s8)
//   A panel: kq quads x MR rows,      panel[(q * MR + r) * 4 + t]   = qa[i0 + r, 4q + t]
//            as s8, or as u8 qa + 128 on paths with `shifted_a` (VNNI)
// K is padded to a multiple of 4 with qw = 0 and qa = 0, columns past N with
// qw = 0, so every path multiplies whole quads and whole panels; only the
// store is masked. A B panel holds all of K (no K blocks): the int32
// accumulators of a tile live in registers from the first k to the last, and
// the store dequantizes them (qgemm.h has the arithmetic).
#pragma once

#include <cstddef>
#include <cstdint>

#include "../gemm/ukernel.h"

namespace attnode::kernels::qgemm_detail {

constexpr int kQNR = 48;  // columns per B panel, on every path

// What a tile's store needs beyond the fp32 epilogue.
struct QStore {
  const float* row_scale;    // sa of the tile's first row (m valid entries)
  const float* col_scale;    // sw at the tile's first column (valid for the whole panel: padded with 0)
  const int32_t* comp;       // 128 * sum_k qw at the tile's first column (whole panel)
  gemm_detail::Epilogue ep;  // alpha, beta, act; ep.bias at the tile's first column or null
};

// kq quads of one A panel (MR rows) against one B panel into the m x n
// (m <= MR, n <= kQNR) top-left of C (row stride ldc), dequantized and
// stored through the fp32 epilogue.
using QKernelFn = void (*)(int64_t kq, const uint8_t* a, const int8_t* b, float* c, int64_t ldc, int m, int n,
                           const QStore* st);

// Quantizes x[0, k) (contiguous) to q[0, k) as s8 (qgemm.h) and returns the
// scale amax / 127. Every path's quantizer gives the same bytes.
using QQuantRowFn = float (*)(const float* x, int64_t k, int8_t* q);

// M == 1: kq quads of x (one row, laid out and shifted as an A row: x[q * 4 + t])
// against the packed panels (panel p at packed + p * kq * kQNR * 4) for
// columns [j0, j1), j0 a multiple of kQNR. st's row_scale points at x's scale;
// col_scale, comp and ep.bias at column 0. Each column's result is
// bit-identical to the same column of the GEMM's row.
using QGemvFn = void (*)(int64_t kq, const uint8_t* x, const int8_t* packed, int64_t j0, int64_t j1, float* c,
                         int64_t n, const QStore* st);

// Quantizes m (<= MR) rows of k floats (rows[r], each contiguous) into one A
// panel of kq quads at dst (the layout above, shifted when shifted_a; rows m..MR
// and the quads past k are zeros) and their scales into sa[0, m): the bytes
// quant_row gives each row, placed as the frontend's generic packing (quant_row,
// then one word at a time) places them. Null on paths that use that packing.
using QPackPanelFn = void (*)(const float* const* rows, int m, int64_t k, int64_t kq, uint8_t* dst, float* sa);

struct QKernels {
  int mr;
  bool shifted_a;
  QKernelFn kernel;
  QQuantRowFn quant_row;
  QGemvFn gemv;
  QPackPanelFn pack_panel;
};

extern const QKernels kQPortableKernels;
extern const QKernels kQAvx2Kernels;
// Only called when the CPU has AVX512-VNNI and the active path is avx512.
extern const QKernels kQAvx512VnniKernels;

}  // namespace attnode::kernels::qgemm_detail
