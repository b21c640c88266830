// The GEMM frontend's blocking framework, for the other GEMM-like families
// (qgemm/: int8 weights) so they tile, thread and allocate scratch exactly as
// sgemm does instead of forking it. Baseline code only: declarations and a
// plain struct (no inline bodies), so ISA translation units may include it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../../runtime/thread_pool.h"

namespace attnode::kernels::gemm_detail {

// How the tiles of one row super-block (ms rows, mp panels of MR) cover C.
// One thread: whole rows x the cache-sized column block. More threads: row
// blocks of ~kTileRows (rarely re-packing B̃), then columns split until there
// are enough tiles to balance; a column block never exceeds nc (B̃ must stay
// in L2). Depends on the thread count, but no tile boundary changes an
// element's arithmetic.
struct TileGrid {
  int64_t nrb, ncb;              // row blocks, column blocks
  int64_t rb_panels, cb_panels;  // MR panels per row block, NR panels per column block
};

TileGrid tile_grid(int64_t ms, int64_t mp, int64_t n, int64_t nc, int64_t np_total, int nt);

// Per-host-thread scratch (64-byte aligned, grown geometrically, never
// shrunk): `frame_thread_scratch` is what sgemm packs Ã into (read by every
// thread of a region), `frame_tile_scratch` a tile's private buffer. Valid
// until the same thread asks again.
void* frame_thread_scratch(size_t bytes);
void* frame_tile_scratch(size_t bytes);

// Threads for a product of `macs` multiply-adds: the pool's size capped by
// max_threads (<= 0: no cap) and by the work (sgemm's bar for a second thread).
int frame_threads(double macs, int max_threads);

// Runs f(j0, j1) over column ranges of [0, n) on up to `nt` threads (an M = 1
// product). Range edges stay on multiples of `unit` from column 0, so each
// column is computed by the same code for any split.
void frame_split_columns(int64_t n, int64_t unit, int64_t nt, runtime::FnRef<void(int64_t j0, int64_t j1)> f);

// The row budget of one packed-Ã super-block in bytes and the eager-wake bar
// (multiply-adds at fp32 speed) sgemm uses.
extern const int64_t kFrameAPackBytes;
extern const double kFrameEagerWakeFma;

}  // namespace attnode::kernels::gemm_detail
