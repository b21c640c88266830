// rope({ x, y, batch, seq, heads, dim, rotaryDim, xStrides, yStrides, positions, positionsBatchStride, invFreq,
//        interleaved })   (RopeArgs in lib/backend/backend.ts)
//
// *Strides = [batch, position, head] element strides (feature axis
// contiguous). positions: Int32Array of seq entries per batch row,
// positionsBatchStride 0 (one row shared) or seq; every entry read must be
// >= 0. invFreq: Float32Array of rotaryDim / 2. y may be x exactly (same
// start and strides: in place); otherwise they must not overlap, nor y the
// positions or invFreq.
#include <array>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "binding/args.h"
#include "binding/bindings.h"
#include "kernels/rotary/rotary.h"

namespace attnode::binding {
namespace {

// One past the last element reachable through `strides` over `sizes`, plus a row of `width`.
int64_t rope_reach(const ArgsBase& args, const int64_t* sizes, const std::vector<int64_t>& strides, int64_t width) {
  int64_t last = 0;
  for (int d = 0; d < 3; ++d) {
    if (sizes[d] == 0) return 0;
    last += checked_mul(args, sizes[d] - 1, strides[d], "stride reach");
  }
  return width == 0 ? 0 : last + width;
}

// Distinct (batch, position, head) rows of y never share an element: ordered
// by stride, each stride clears everything the smaller ones reach.
bool rows_disjoint(const int64_t* sizes, const std::vector<int64_t>& strides, int64_t width) {
  std::array<std::pair<int64_t, int64_t>, 3> dims;  // (stride, size)
  int n = 0;
  for (int d = 0; d < 3; ++d) {
    if (sizes[d] == 0) return true;
    if (sizes[d] > 1) dims[n++] = {strides[d], sizes[d]};
  }
  for (int i = 1; i < n; ++i) {
    for (int j = i; j > 0 && dims[j] < dims[j - 1]; --j) std::swap(dims[j], dims[j - 1]);
  }
  int64_t covered = width;
  for (int i = 0; i < n; ++i) {
    if (dims[i].first < covered) return false;
    covered = dims[i].first * (dims[i].second - 1) + covered;
  }
  return true;
}

}  // namespace

Kernel ParseRope(NamedArgs& args) {
  // Scalars and strides first; the arrays last (no re-check needed after the last property read).
  const int64_t batch = args.integer("batch", 0, kMaxElements);
  const int64_t seq = args.integer("seq", 0, kMaxElements);
  const int64_t heads = args.integer("heads", 0, kMaxElements);
  const int64_t dim = args.integer("dim", 0, kMaxElements);
  const int64_t rotary_dim = args.integer("rotaryDim", 0, kMaxElements);
  const int64_t pbs = args.integer("positionsBatchStride", 0, kMaxElements);
  const bool interleaved = args.boolean("interleaved");
  std::vector<int64_t> strides[2];
  const char* stride_names[2] = {"xStrides", "yStrides"};
  for (int i = 0; i < 2; ++i) {
    strides[i] = args.int_array(stride_names[i], 3, 0, kMaxElements);
    if (strides[i].size() != 3) {
      args.range_error(std::string("argument '") + stride_names[i] +
                       "' must have 3 entries (batch, position, head), got " + std::to_string(strides[i].size()));
    }
  }
  auto x = args.f32("x");
  auto y = args.f32("y");
  auto positions = args.i32("positions");
  auto inv_freq = args.f32("invFreq");

  if (rotary_dim % 2 != 0 || rotary_dim > dim) {
    args.range_error("argument 'rotaryDim' must be even and at most dim = " + std::to_string(dim) + ", got " +
                     std::to_string(rotary_dim));
  }
  if (pbs != 0 && pbs != seq) {
    args.range_error("argument 'positionsBatchStride' must be 0 or seq = " + std::to_string(seq) + ", got " +
                     std::to_string(pbs));
  }
  const int64_t sizes[3] = {batch, seq, heads};
  const int64_t x_reach = rope_reach(args, sizes, strides[0], dim);
  const int64_t y_reach = rope_reach(args, sizes, strides[1], dim);
  args.require_length(x, "x", x_reach, "xStrides over [batch, seq, heads] + dim");
  args.require_length(y, "y", y_reach, "yStrides over [batch, seq, heads] + dim");
  const int64_t n_pos = pbs == 0 ? seq : checked_mul(args, batch, seq, "batch*seq");
  args.require_length(positions, "positions", n_pos, pbs == 0 ? "seq" : "batch*seq");
  args.require_length(inv_freq, "invFreq", rotary_dim / 2, "rotaryDim / 2");
  if (!rows_disjoint(sizes, strides[1], dim)) args.range_error("argument 'yStrides' makes output rows overlap");
  Span<float> x_used = x, y_used = y;
  x_used.length = x_reach;
  y_used.length = y_reach;
  args.require_no_overlap(y_used, "y", x_used, "x", strides[0] == strides[1]);
  args.require_no_overlap(y_used, "y", positions, "positions", false);
  args.require_no_overlap(y_used, "y", inv_freq, "invFreq", false);
  for (int64_t i = 0; i < n_pos; ++i) {
    if (positions.data[i] < 0) {
      args.range_error("argument 'positions' must hold positions >= 0, got " + std::to_string(positions.data[i]) +
                       " at index " + std::to_string(i));
    }
  }
  if (x_reach == 0) return {};

  kernels::RopeParams p;
  p.x = x.data;
  p.y = y.data;
  p.batch = batch;
  p.seq = seq;
  p.heads = heads;
  p.dim = dim;
  p.rotary_dim = rotary_dim;
  for (int d = 0; d < 3; ++d) {
    p.x_strides[d] = strides[0][d];
    p.y_strides[d] = strides[1][d];
  }
  p.positions = positions.data;
  p.positions_batch_stride = pbs;
  p.inv_freq = inv_freq.data;
  p.interleaved = interleaved;
  // The kernel checks the positions again: a recorded call runs later, and JS may have changed them.
  return [p] {
    const int64_t bad = kernels::rope(p);
    if (bad >= 0) {
      throw std::runtime_error("rope: argument 'positions' must hold positions >= 0, got " +
                               std::to_string(p.positions[bad]) + " at index " + std::to_string(bad));
    }
  };
}

}  // namespace attnode::binding
