// Row-strided operands of the row-wise ops (softmax, the norms, their backward, the losses): a [rows, cols]
// operand whose rows start `ld` elements apart, checked against its typed array.
#pragma once

#include <string>

#include "binding/args.h"

namespace attnode::binding {

// A [rows, cols] operand whose rows start `ld` elements apart (the optional
// xRowStride / yRowStride, default cols). `used` is the span restricted to
// the elements the op reads or writes, for the overlap checks.
struct Rows {
  Span<float> span;
  Span<float> used;
  int64_t ld = 0;
};

// The row stride field `stride_name`: default cols, at least cols.
inline int64_t row_stride(const NamedArgs& args, const char* stride_name, int64_t cols) {
  const int64_t ld = args.integer_or(stride_name, cols, 0, kMaxElements);
  if (ld < cols) {
    args.range_error(std::string("argument '") + stride_name + "' is " + std::to_string(ld) +
                     ", expected at least cols = " + std::to_string(cols));
  }
  return ld;
}

inline Rows strided_rows(const NamedArgs& args, const Span<float>& span, const char* name, const char* stride_name,
                         int64_t ld, int64_t rows, int64_t cols) {
  Rows r;
  r.span = span;
  r.ld = ld;
  const int64_t extent = rows == 0 || cols == 0 ? 0 : checked_mul(args, rows - 1, r.ld, "extent") + cols;
  const bool strided = r.ld != cols;
  args.require_length(span, name, extent, strided ? std::string("(rows-1)*") + stride_name + " + cols" : "rows*cols");
  r.used = span;
  r.used.length = extent;
  return r;
}

// The input and output of a row-wise op: in place only as the same view
// (same start and same row stride), never overlapping otherwise.
inline void check_rows_in_out(const NamedArgs& args, const Rows& x, const char* x_name, const Rows& y,
                              const char* y_name) {
  args.require_no_overlap(y.used, y_name, x.used, x_name, x.ld == y.ld);
}

}  // namespace attnode::binding
