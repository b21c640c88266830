// softmax, layerNorm, addLayerNorm, rmsNorm, addRmsNorm, relu, gelu, unary, siluMul, binary,
// embedding, permute0213, and the backward of the row-wise and element-wise ones (softmaxBackward,
// layerNormBackward, rmsNormBackward, activationBackward, embeddingBackward): validate each op's argument object (the OpArgs
// entries of lib/backend/backend.ts) and call the kernels in
// native/kernels/{softmax,norms,elementwise,layout}/.
#include "binding/args.h"
#include "binding/bindings.h"
#include "binding/rows.h"
#include "kernels/elementwise/elementwise.h"
#include "kernels/layout/layout.h"
#include "kernels/norms/norms.h"
#include "kernels/softmax/softmax.h"

#include <algorithm>
#include <stdexcept>
#include <utility>
#include <string>
#include <vector>

namespace attnode::binding {
namespace {

constexpr size_t kMaxBinaryDims = 8;

}  // namespace

// The row-wise ops read their scalars first and their arrays last: an array
// checked after the last property read needs no re-check (require_unchanged).

// softmax({ x, y, rows, cols, log?, xRowStride?, yRowStride? }): log = true gives log_softmax.
Kernel ParseSoftmax(NamedArgs& args) {
  const int64_t rows = args.integer("rows", 0, kMaxElements);
  const int64_t cols = args.integer("cols", 0, kMaxElements);
  const bool log = args.boolean_or("log", false);
  const int64_t ldx = row_stride(args, "xRowStride", cols);
  const int64_t ldy = row_stride(args, "yRowStride", cols);
  auto x_span = args.f32("x");
  auto y_span = args.f32("y");
  const int64_t size = checked_mul(args, rows, cols, "rows*cols");
  const Rows x = strided_rows(args, x_span, "x", "xRowStride", ldx, rows, cols);
  const Rows y = strided_rows(args, y_span, "y", "yRowStride", ldy, rows, cols);
  check_rows_in_out(args, x, "x", y, "y");
  if (size == 0) return {};
  return [x = x.span.data, y = y.span.data, rows, cols, ldx = x.ld, ldy = y.ld, log] {
    if (log) {
      kernels::log_softmax_rows(x, y, rows, cols, ldx, ldy);
    } else {
      kernels::softmax_rows(x, y, rows, cols, ldx, ldy);
    }
  };
}

namespace {

// The checks the norms share: eps, the optional per-column weight (and
// bias), and an output `out` that must not overlap them.
double check_norm_params(const ArgsBase& args, double eps, const Span<float>& weight, const Span<float>* bias,
                         int64_t cols, const Span<float>& out, const char* out_name) {
  if (!(eps >= 0)) args.range_error("argument 'eps' must be a number >= 0, got " + js_number(eps));
  if (weight.given) args.require_length(weight, "weight", cols, "cols");
  if (bias && bias->given) args.require_length(*bias, "bias", cols, "cols");
  if (weight.given) args.require_no_overlap(out, out_name, weight, "weight", false);
  if (bias && bias->given) args.require_no_overlap(out, out_name, *bias, "bias", false);
  return eps;
}

}  // namespace

Kernel ParseLayerNorm(NamedArgs& args) {
  const int64_t rows = args.integer("rows", 0, kMaxElements);
  const int64_t cols = args.integer("cols", 0, kMaxElements);
  const double eps_arg = args.number("eps");
  const int64_t ldx = row_stride(args, "xRowStride", cols);
  const int64_t ldy = row_stride(args, "yRowStride", cols);
  auto x_span = args.f32("x");
  auto weight = args.f32_or_null("weight");
  auto bias = args.f32_or_null("bias");
  auto y_span = args.f32("y");
  const int64_t size = checked_mul(args, rows, cols, "rows*cols");
  const Rows x = strided_rows(args, x_span, "x", "xRowStride", ldx, rows, cols);
  const Rows y = strided_rows(args, y_span, "y", "yRowStride", ldy, rows, cols);
  const double eps = check_norm_params(args, eps_arg, weight, &bias, cols, y.used, "y");
  check_rows_in_out(args, x, "x", y, "y");
  if (size == 0) return {};
  return [x = x.span.data, g = weight.data, b = bias.data, y = y.span.data, rows, cols, e = static_cast<float>(eps),
          ldx = x.ld, ldy = y.ld] { kernels::layer_norm_rows(x, g, b, y, rows, cols, e, ldx, ldy); };
}

// rmsNorm: as layerNorm without bias; y = x / sqrt(mean(x^2) + eps) * weight.
Kernel ParseRmsNorm(NamedArgs& args) {
  const int64_t rows = args.integer("rows", 0, kMaxElements);
  const int64_t cols = args.integer("cols", 0, kMaxElements);
  const double eps_arg = args.number("eps");
  const int64_t ldx = row_stride(args, "xRowStride", cols);
  const int64_t ldy = row_stride(args, "yRowStride", cols);
  auto x_span = args.f32("x");
  auto weight = args.f32_or_null("weight");
  auto y_span = args.f32("y");
  const int64_t size = checked_mul(args, rows, cols, "rows*cols");
  const Rows x = strided_rows(args, x_span, "x", "xRowStride", ldx, rows, cols);
  const Rows y = strided_rows(args, y_span, "y", "yRowStride", ldy, rows, cols);
  const double eps = check_norm_params(args, eps_arg, weight, nullptr, cols, y.used, "y");
  check_rows_in_out(args, x, "x", y, "y");
  if (size == 0) return {};
  return [x = x.span.data, g = weight.data, y = y.span.data, rows, cols, e = static_cast<float>(eps), ldx = x.ld,
          ldy = y.ld] { kernels::rms_norm_rows(x, g, y, rows, cols, e, ldx, ldy); };
}

namespace {

// The operands of addLayerNorm / addRmsNorm, all contiguous [rows, cols]:
// y = norm(x + residual), sum = x + residual (or null).
struct AddNormOperands {
  Span<float> x, residual, y, sum;
  int64_t rows = 0, cols = 0, size = 0;
};

// Outputs may replace an input exactly (row by row, each row is read before
// it is written), never overlap it partly, the parameters, or each other.
void check_add_norm(const NamedArgs& args, AddNormOperands& o, const Span<float>& weight, const Span<float>* bias,
                    double eps) {
  o.size = checked_mul(args, o.rows, o.cols, "rows*cols");
  args.require_length(o.x, "x", o.size, "rows*cols");
  args.require_length(o.residual, "residual", o.size, "rows*cols");
  args.require_length(o.y, "y", o.size, "rows*cols");
  check_norm_params(args, eps, weight, bias, o.cols, o.y, "y");
  args.require_no_overlap(o.y, "y", o.x, "x", true);
  args.require_no_overlap(o.y, "y", o.residual, "residual", true);
  if (o.sum.given) {
    args.require_length(o.sum, "sum", o.size, "rows*cols");
    check_norm_params(args, eps, weight, bias, o.cols, o.sum, "sum");
    args.require_no_overlap(o.sum, "sum", o.x, "x", true);
    args.require_no_overlap(o.sum, "sum", o.residual, "residual", true);
    args.require_no_overlap(o.sum, "sum", o.y, "y", false);
  }
}

}  // namespace

Kernel ParseAddLayerNorm(NamedArgs& args) {
  AddNormOperands o;
  o.rows = args.integer("rows", 0, kMaxElements);
  o.cols = args.integer("cols", 0, kMaxElements);
  const double eps = args.number("eps");
  o.x = args.f32("x");
  o.residual = args.f32("residual");
  auto weight = args.f32_or_null("weight");
  auto bias = args.f32_or_null("bias");
  o.y = args.f32("y");
  o.sum = args.f32_or_null("sum");
  auto rstd = args.f32_optional("rstd");
  check_add_norm(args, o, weight, &bias, eps);
  if (rstd.given) {
    // Written: one float per row, overlapping no operand.
    args.require_length(rstd, "rstd", o.rows, "rows");
    Span<float> used = rstd;
    used.length = o.rows;
    for (const auto& [t, name] : {std::pair{&o.x, "x"}, {&o.residual, "residual"}, {&o.y, "y"}, {&weight, "weight"},
                                  {&bias, "bias"}, {&o.sum, "sum"}}) {
      if (t->given) args.require_no_overlap(used, "rstd", *t, name, false);
    }
  }
  if (o.size == 0) return {};
  return [x = o.x.data, r = o.residual.data, g = weight.data, b = bias.data, y = o.y.data, s = o.sum.data,
          rows = o.rows, cols = o.cols, e = static_cast<float>(eps),
          sd = rstd.data] { kernels::add_layer_norm_rows(x, r, g, b, y, s, rows, cols, e, sd); };
}

// addRmsNorm(x, residual, weight, y, sum): y = rms_norm(x + residual), sum = x + residual (or null).
Kernel ParseAddRmsNorm(NamedArgs& args) {
  AddNormOperands o;
  o.rows = args.integer("rows", 0, kMaxElements);
  o.cols = args.integer("cols", 0, kMaxElements);
  const double eps = args.number("eps");
  o.x = args.f32("x");
  o.residual = args.f32("residual");
  auto weight = args.f32_or_null("weight");
  o.y = args.f32("y");
  o.sum = args.f32_or_null("sum");
  check_add_norm(args, o, weight, nullptr, eps);
  if (o.size == 0) return {};
  return [x = o.x.data, r = o.residual.data, g = weight.data, y = o.y.data, s = o.sum.data, rows = o.rows,
          cols = o.cols, e = static_cast<float>(eps)] { kernels::add_rms_norm_rows(x, r, g, y, s, rows, cols, e); };
}

namespace {

// Shared by relu and gelu: y must have x's length; in place is fine.
void check_unary(const ArgsBase& args, const Span<float>& x, const Span<float>& y) {
  if (y.length != x.length) {
    args.range_error("argument 'y' has " + std::to_string(y.length) + " elements, expected x's " +
                     std::to_string(x.length));
  }
  args.require_no_overlap(y, "y", x, "x", true);
}

}  // namespace

Kernel ParseRelu(NamedArgs& args) {
  auto x = args.f32("x");
  auto y = args.f32("y");
  check_unary(args, x, y);
  if (x.length == 0) return {};
  return [x = x.data, y = y.data, n = x.length] { kernels::relu(x, y, n); };
}

Kernel ParseGelu(NamedArgs& args) {
  const bool tanh_approx = args.boolean("tanhApprox");
  auto x = args.f32("x");
  auto y = args.f32("y");
  check_unary(args, x, y);
  if (x.length == 0) return {};
  return [x = x.data, y = y.data, n = x.length, tanh_approx] { kernels::gelu(x, y, n, tanh_approx); };
}

// unary({ op, x, y }): op 0 silu, 1 sigmoid, 2 tanh (UnaryOp in lib/backend/backend.ts).
Kernel ParseUnary(NamedArgs& args) {
  const int64_t op = args.integer("op", 0, 2);
  auto x = args.f32("x");
  auto y = args.f32("y");
  check_unary(args, x, y);
  if (x.length == 0) return {};
  return [op = static_cast<kernels::UnaryOp>(op), x = x.data, y = y.data, n = x.length] {
    kernels::unary(op, x, y, n);
  };
}

// siluMul({ gate, up, y }): y = silu(gate) * up over gate.length elements; y may be gate or up exactly.
Kernel ParseSiluMul(NamedArgs& args) {
  auto gate = args.f32("gate");
  auto up = args.f32("up");
  auto y = args.f32("y");
  if (up.length != gate.length) {
    args.range_error("argument 'up' has " + std::to_string(up.length) + " elements, expected gate's " +
                     std::to_string(gate.length));
  }
  if (y.length != gate.length) {
    args.range_error("argument 'y' has " + std::to_string(y.length) + " elements, expected gate's " +
                     std::to_string(gate.length));
  }
  args.require_no_overlap(y, "y", gate, "gate", true);
  args.require_no_overlap(y, "y", up, "up", true);
  if (gate.length == 0) return {};
  return [g = gate.data, u = up.data, y = y.data, n = gate.length] { kernels::silu_mul(g, u, y, n); };
}

namespace {

// One past the largest element index reachable with these strides.
int64_t strided_extent(const ArgsBase& args, const std::vector<int64_t>& shape, const std::vector<int64_t>& strides) {
  int64_t last = 0;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 0) return 0;
    last += checked_mul(args, shape[d] - 1, strides[d], "stride extent");
  }
  return last + 1;
}

bool is_contiguous(const std::vector<int64_t>& shape, const std::vector<int64_t>& strides) {
  int64_t expect = 1;
  for (size_t d = shape.size(); d-- > 0;) {
    if (shape[d] != 1 && strides[d] != expect) return false;
    expect *= shape[d];
  }
  return true;
}

}  // namespace

Kernel ParseBinary(NamedArgs& args) {
  const int64_t op = args.integer("op", 0, 3);
  auto a = args.f32("a");
  auto a_strides = args.int_array("aStrides", kMaxBinaryDims, 0, kMaxElements);
  auto b = args.f32("b");
  auto b_strides = args.int_array("bStrides", kMaxBinaryDims, 0, kMaxElements);
  auto y = args.f32("y");
  auto shape = args.int_array("shape", kMaxBinaryDims, 0, kMaxElements);
  if (a_strides.size() != shape.size() || b_strides.size() != shape.size()) {
    args.range_error("aStrides (" + std::to_string(a_strides.size()) + " dims) and bStrides (" +
                     std::to_string(b_strides.size()) + " dims) must have shape's " + std::to_string(shape.size()) +
                     " dims");
  }
  int64_t size = 1;
  for (int64_t s : shape) size = checked_mul(args, size, s, "product of shape");
  args.require_length(y, "y", size, "product of shape");
  args.require_length(a, "a", strided_extent(args, shape, a_strides), "reach of shape and aStrides");
  args.require_length(b, "b", strided_extent(args, shape, b_strides), "reach of shape and bStrides");
  // In place only when the aliased operand is read exactly where y is written.
  Span<float> y_used = y;
  y_used.length = size;
  args.require_no_overlap(y_used, "y", a, "a", is_contiguous(shape, a_strides));
  args.require_no_overlap(y_used, "y", b, "b", is_contiguous(shape, b_strides));
  if (size == 0) return {};
  return [op = static_cast<kernels::BinaryOp>(op), a = a.data, as = std::move(a_strides), b = b.data,
          bs = std::move(b_strides), y = y.data, shape = std::move(shape)] {
    kernels::binary_op(op, a, as.data(), b, bs.data(), y, shape.data(), static_cast<int>(shape.size()));
  };
}

namespace {

// Distinct indices of `shape` reach distinct elements through `strides`
// (sufficient condition: ordered by stride, each stride clears everything
// the smaller ones reach), so parallel writes never race.
bool elements_distinct(const std::vector<int64_t>& shape, const std::vector<int64_t>& strides) {
  std::vector<std::pair<int64_t, int64_t>> dims;  // (stride, size)
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 0) return true;
    if (shape[d] > 1) dims.emplace_back(strides[d], shape[d]);
  }
  for (size_t i = 1; i < dims.size(); ++i) {
    for (size_t j = i; j > 0 && dims[j] < dims[j - 1]; --j) std::swap(dims[j], dims[j - 1]);
  }
  int64_t covered = 1;
  for (const auto& [stride, size] : dims) {
    if (stride < covered) return false;
    covered = stride * (size - 1) + covered;
  }
  return true;
}

}  // namespace

// copy({ x, xStrides, y, yStrides, shape }): y[i] = x[i] over `shape` (<= 8 dims), both strided.
Kernel ParseCopy(NamedArgs& args) {
  auto x_strides = args.int_array("xStrides", kMaxBinaryDims, 0, kMaxElements);
  auto y_strides = args.int_array("yStrides", kMaxBinaryDims, 0, kMaxElements);
  auto shape = args.int_array("shape", kMaxBinaryDims, 0, kMaxElements);
  auto x = args.f32("x");
  auto y = args.f32("y");
  if (x_strides.size() != shape.size() || y_strides.size() != shape.size()) {
    args.range_error("xStrides (" + std::to_string(x_strides.size()) + " dims) and yStrides (" +
                     std::to_string(y_strides.size()) + " dims) must have shape's " + std::to_string(shape.size()) +
                     " dims");
  }
  int64_t size = 1;
  for (int64_t s : shape) size = checked_mul(args, size, s, "product of shape");
  const int64_t x_reach = strided_extent(args, shape, x_strides);
  const int64_t y_reach = strided_extent(args, shape, y_strides);
  args.require_length(x, "x", x_reach, "reach of shape and xStrides");
  args.require_length(y, "y", y_reach, "reach of shape and yStrides");
  if (!elements_distinct(shape, y_strides)) args.range_error("argument 'yStrides' makes output elements overlap");
  Span<float> x_used = x, y_used = y;
  x_used.length = x_reach;
  y_used.length = y_reach;
  // The same view is allowed (nothing moves); any other overlap is refused.
  args.require_no_overlap(y_used, "y", x_used, "x", x_strides == y_strides);
  if (size == 0) return {};
  return [x = x.data, xs = std::move(x_strides), y = y.data, ys = std::move(y_strides), shape = std::move(shape)] {
    kernels::copy_strided(x, xs.data(), y, ys.data(), shape.data(), static_cast<int>(shape.size()));
  };
}

Kernel ParseEmbedding(NamedArgs& args) {
  auto weight = args.f32("weight");
  const int64_t num = args.integer("num", 0, kMaxElements);
  const int64_t dim = args.integer("dim", 0, kMaxElements);
  auto ids = args.i32("ids");
  auto out = args.f32("out");
  // Optional row strides (default dim: dense rows) let the gather read and write rows of wider buffers.
  const int64_t ldw = row_stride(args, "weightRowStride", dim);
  const int64_t ldo = row_stride(args, "outRowStride", dim);
  const Rows w = strided_rows(args, weight, "weight", "weightRowStride", ldw, num, dim);
  const Rows o = strided_rows(args, out, "out", "outRowStride", ldo, ids.length, dim);
  args.require_no_overlap(o.used, "out", w.used, "weight", false);
  for (int64_t i = 0; i < ids.length; ++i) {
    const int32_t id = ids.data[i];
    if (id < 0 || id >= num) {
      args.range_error("index " + std::to_string(id) + " at position " + std::to_string(i) +
                       " is out of range for an embedding of " + std::to_string(num) + " rows");
    }
  }
  if (ids.length == 0 || dim == 0) return {};
  // The kernel checks the ids again: a recorded call runs later, and JS may have changed them.
  return [w = weight.data, num, dim, ldw, ids = ids.data, n = ids.length, out = out.data, ldo] {
    const int64_t bad = kernels::embedding(w, num, dim, ldw, ids, n, out, ldo);
    if (bad >= 0) {
      throw std::runtime_error("embedding: index " + std::to_string(ids[bad]) + " at position " + std::to_string(bad) +
                               " is out of range for an embedding of " + std::to_string(num) + " rows");
    }
  };
}

// indexCopy({ x, ldx, y, ldy, yRows, rows, cols, index }): row index[i] of y (rows ldy apart, yRows of them) = row
// i of x (rows ldx apart), for the first `rows` entries of index, rows of cols elements. Indices must be in [0, yRows)
// and distinct; the index is read again when the call runs (see runList) and checked then, so a later change cannot
// move a write out of bounds.
Kernel ParseIndexCopy(NamedArgs& args) {
  const int64_t cols = args.integer("cols", 0, kMaxElements);
  const int64_t ldx = args.integer("ldx", 0, kMaxElements);
  const int64_t ldy = args.integer("ldy", 0, kMaxElements);
  const int64_t y_rows = args.integer("yRows", 0, kMaxElements);
  const int64_t n = args.integer("rows", 0, kMaxElements);
  auto x = args.f32("x");
  auto y = args.f32("y");
  auto index = args.i32("index");
  args.require_length(index, "index", n, "rows");
  if (n > 1 && ldx < cols) args.range_error("argument 'ldx' must be at least cols = " + std::to_string(cols) + ", got " + std::to_string(ldx));
  if (y_rows > 1 && ldy < cols) args.range_error("argument 'ldy' must be at least cols = " + std::to_string(cols) + ", got " + std::to_string(ldy));
  const int64_t x_reach = n == 0 || cols == 0 ? 0 : checked_mul(args, n - 1, ldx, "(rows-1)*ldx") + cols;
  const int64_t y_reach = y_rows == 0 || cols == 0 ? 0 : checked_mul(args, y_rows - 1, ldy, "(yRows-1)*ldy") + cols;
  args.require_length(x, "x", x_reach, "(rows - 1) * ldx + cols");
  args.require_length(y, "y", y_reach, "(yRows - 1) * ldy + cols");
  Span<float> x_used = x, y_used = y;
  x_used.length = x_reach;
  y_used.length = y_reach;
  args.require_no_overlap(y_used, "y", x_used, "x", false);
  args.require_no_overlap(y_used, "y", index, "index", false);
  std::vector<int32_t> rows(index.data, index.data + n);
  for (int64_t i = 0; i < n; ++i) {
    if (rows[i] < 0 || rows[i] >= y_rows) {
      args.range_error("argument 'index' must hold rows in [0, yRows = " + std::to_string(y_rows) + "), got " +
                       std::to_string(rows[i]) + " at position " + std::to_string(i));
    }
  }
  std::vector<int32_t> sorted = rows;
  std::sort(sorted.begin(), sorted.end());
  const auto dup = std::adjacent_find(sorted.begin(), sorted.end());
  if (dup != sorted.end()) args.range_error("argument 'index' must hold distinct rows, got " + std::to_string(*dup) + " twice");
  if (n == 0 || cols == 0) return {};
  // The index is read when the call runs (a recorded list replayed by runList moves it between runs) and checked
  // again then, so a changed entry fails the call instead of writing out of bounds.
  return [x = x.data, ldx, y = y.data, ldy, cols, y_rows, live = index.data, n] {
    std::vector<int32_t> rows(live, live + n);
    for (int64_t i = 0; i < n; ++i) {
      if (rows[i] < 0 || rows[i] >= y_rows) {
        throw std::runtime_error("indexCopy: argument 'index' must hold rows in [0, yRows = " + std::to_string(y_rows) +
                                 "), got " + std::to_string(rows[i]) + " at position " + std::to_string(i) +
                                 " when the call ran");
      }
    }
    if (n > 1) {
      std::vector<int32_t> sorted = rows;
      std::sort(sorted.begin(), sorted.end());
      const auto dup = std::adjacent_find(sorted.begin(), sorted.end());
      if (dup != sorted.end()) {
        throw std::runtime_error("indexCopy: argument 'index' must hold distinct rows, got " + std::to_string(*dup) +
                                 " twice when the call ran");
      }
    }
    kernels::index_copy_rows(x, ldx, y, ldy, cols, rows.data(), n);
  };
}

Kernel ParsePermute0213(NamedArgs& args) {
  auto x = args.f32("x");
  auto y = args.f32("y");
  int64_t d[4];
  const char* names[4] = {"d0", "d1", "d2", "d3"};
  int64_t size = 1;
  for (int i = 0; i < 4; ++i) {
    d[i] = args.integer(names[i], 0, kMaxElements);
    size = checked_mul(args, size, d[i], "d0*d1*d2*d3");
  }
  args.require_length(x, "x", size, "d0*d1*d2*d3");
  args.require_length(y, "y", size, "d0*d1*d2*d3");
  args.require_no_overlap(y, "y", x, "x", false);
  if (size == 0) return {};
  return [x = x.data, y = y.data, d0 = d[0], d1 = d[1], d2 = d[2], d3 = d[3]] {
    kernels::permute_0213(x, y, d0, d1, d2, d3);
  };
}

// ---------------------------------------------------------------------------------------------------- backward

// softmaxBackward({ y, dy, dx, rows, cols, log?, yRowStride?, dyRowStride?, dxRowStride? }): dx from the forward's
// output y and its gradient dy; dx may be dy or y only as the same view.
Kernel ParseSoftmaxBackward(NamedArgs& args) {
  const int64_t rows = args.integer("rows", 0, kMaxElements);
  const int64_t cols = args.integer("cols", 0, kMaxElements);
  const bool log = args.boolean_or("log", false);
  const int64_t ldy = row_stride(args, "yRowStride", cols);
  const int64_t lddy = row_stride(args, "dyRowStride", cols);
  const int64_t lddx = row_stride(args, "dxRowStride", cols);
  auto y_span = args.f32("y");
  auto dy_span = args.f32("dy");
  auto dx_span = args.f32("dx");
  const int64_t size = checked_mul(args, rows, cols, "rows*cols");
  const Rows y = strided_rows(args, y_span, "y", "yRowStride", ldy, rows, cols);
  const Rows dy = strided_rows(args, dy_span, "dy", "dyRowStride", lddy, rows, cols);
  const Rows dx = strided_rows(args, dx_span, "dx", "dxRowStride", lddx, rows, cols);
  check_rows_in_out(args, y, "y", dx, "dx");
  check_rows_in_out(args, dy, "dy", dx, "dx");
  if (size == 0) return {};
  return [y = y.span.data, dy = dy.span.data, dx = dx.span.data, rows, cols, log, ldy, lddy, lddx] {
    kernels::softmax_backward_rows(y, dy, dx, rows, cols, log, ldy, lddy, lddx);
  };
}

namespace {

// What layerNormBackward and rmsNormBackward share: x, dy, dx as rows; the optional weight; the parameter gradients
// ([cols], overwritten), which overlap nothing.
struct NormBackwardOperands {
  int64_t rows = 0, cols = 0, size = 0;
  double eps = 0;
  Rows x, dy, dx;
  Span<float> weight;
};

NormBackwardOperands parse_norm_backward(NamedArgs& args) {
  NormBackwardOperands o;
  o.rows = args.integer("rows", 0, kMaxElements);
  o.cols = args.integer("cols", 0, kMaxElements);
  o.eps = args.number("eps");
  const int64_t ldx = row_stride(args, "xRowStride", o.cols);
  const int64_t lddy = row_stride(args, "dyRowStride", o.cols);
  const int64_t lddx = row_stride(args, "dxRowStride", o.cols);
  auto x_span = args.f32("x");
  o.weight = args.f32_or_null("weight");
  auto dy_span = args.f32("dy");
  auto dx_span = args.f32("dx");
  o.size = checked_mul(args, o.rows, o.cols, "rows*cols");
  o.x = strided_rows(args, x_span, "x", "xRowStride", ldx, o.rows, o.cols);
  o.dy = strided_rows(args, dy_span, "dy", "dyRowStride", lddy, o.rows, o.cols);
  o.dx = strided_rows(args, dx_span, "dx", "dxRowStride", lddx, o.rows, o.cols);
  check_norm_params(args, o.eps, o.weight, nullptr, o.cols, o.dx.used, "dx");
  args.require_no_overlap(o.dx.used, "dx", o.x.used, "x", false);
  check_rows_in_out(args, o.dy, "dy", o.dx, "dx");
  return o;
}

// A parameter gradient output [cols] (or null): overlaps no operand.
void check_param_grad(const NamedArgs& args, const NormBackwardOperands& o, const Span<float>& g, const char* name) {
  if (!g.given) return;
  args.require_length(g, name, o.cols, "cols");
  Span<float> used = g;
  used.length = o.cols;
  args.require_no_overlap(used, name, o.x.used, "x", false);
  args.require_no_overlap(used, name, o.dy.used, "dy", false);
  args.require_no_overlap(used, name, o.dx.used, "dx", false);
  if (o.weight.given) args.require_no_overlap(used, name, o.weight, "weight", false);
}

}  // namespace

// layerNormBackward({ x, weight, dy, dx, dweight, dbias, rows, cols, eps, xRowStride?, dyRowStride?, dxRowStride?,
// rstd?, bias? }): with rstd ([rows], the forward's 1/sqrt(var + eps) per row) x is the forward's output and bias
// ([cols] or null) its bias.
Kernel ParseLayerNormBackward(NamedArgs& args) {
  NormBackwardOperands o = parse_norm_backward(args);
  auto dweight = args.f32_or_null("dweight");
  auto dbias = args.f32_or_null("dbias");
  auto rstd = args.f32_optional("rstd");
  auto bias = args.f32_optional("bias");
  check_param_grad(args, o, dweight, "dweight");
  check_param_grad(args, o, dbias, "dbias");
  if (dweight.given && dbias.given) {
    Span<float> a = dweight, b = dbias;
    a.length = b.length = o.cols;
    args.require_no_overlap(a, "dweight", b, "dbias", false);
  }
  if (bias.given && !rstd.given) {
    args.range_error("argument 'bias' is read only with 'rstd' (a backward from the forward's output); got bias without rstd");
  }
  if (rstd.given) {
    args.require_length(rstd, "rstd", o.rows, "rows");
    Span<float> used = rstd;
    used.length = o.rows;
    args.require_no_overlap(used, "rstd", o.dx.used, "dx", false);
    if (bias.given) {
      args.require_length(bias, "bias", o.cols, "cols");
      Span<float> b = bias;
      b.length = o.cols;
      args.require_no_overlap(b, "bias", o.dx.used, "dx", false);
      for (const Span<float>* g : {&dweight, &dbias}) {
        if (g->given) args.require_no_overlap(b, "bias", *g, g == &dweight ? "dweight" : "dbias", false);
      }
    }
    for (const Span<float>* g : {&dweight, &dbias}) {
      if (g->given) args.require_no_overlap(used, "rstd", *g, g == &dweight ? "dweight" : "dbias", false);
    }
  }
  if (o.cols == 0) return {};
  return [x = o.x.span.data, g = o.weight.data, dy = o.dy.span.data, dx = o.dx.span.data, dg = dweight.data,
          db = dbias.data, rows = o.rows, cols = o.cols, e = static_cast<float>(o.eps), ldx = o.x.ld, lddy = o.dy.ld,
          lddx = o.dx.ld, b = bias.data, sd = rstd.data] {
    kernels::layer_norm_backward_rows(x, g, dy, dx, dg, db, rows, cols, e, ldx, lddy, lddx, b, sd);
  };
}

// rmsNormBackward({ x, weight, dy, dx, dweight, rows, cols, eps, xRowStride?, dyRowStride?, dxRowStride? }).
Kernel ParseRmsNormBackward(NamedArgs& args) {
  NormBackwardOperands o = parse_norm_backward(args);
  auto dweight = args.f32_or_null("dweight");
  check_param_grad(args, o, dweight, "dweight");
  if (o.cols == 0) return {};
  return [x = o.x.span.data, g = o.weight.data, dy = o.dy.span.data, dx = o.dx.span.data, dg = dweight.data,
          rows = o.rows, cols = o.cols, e = static_cast<float>(o.eps), ldx = o.x.ld, lddy = o.dy.ld, lddx = o.dx.ld] {
    kernels::rms_norm_backward_rows(x, g, dy, dx, dg, rows, cols, e, ldx, lddy, lddx);
  };
}

// activationBackward({ op, x, dy, dx }): op 0 relu, 1 gelu, 2 gelu tanh, 3 silu, 4 sigmoid, 5 tanh (ActivationGrad
// in lib/backend/backend.ts); x is the forward's input (its output for sigmoid and tanh); dx may be x or dy exactly.
Kernel ParseActivationBackward(NamedArgs& args) {
  const int64_t op = args.integer("op", 0, 5);
  auto x = args.f32("x");
  auto dy = args.f32("dy");
  auto dx = args.f32("dx");
  for (const auto& [span, name] : {std::pair{&dy, "dy"}, std::pair{&dx, "dx"}}) {
    if (span->length != x.length) {
      args.range_error(std::string("argument '") + name + "' has " + std::to_string(span->length) +
                       " elements, expected x's " + std::to_string(x.length));
    }
  }
  args.require_no_overlap(dx, "dx", x, "x", true);
  args.require_no_overlap(dx, "dx", dy, "dy", true);
  if (x.length == 0) return {};
  return [op = static_cast<kernels::ActivationGrad>(op), x = x.data, dy = dy.data, dx = dx.data, n = x.length] {
    kernels::activation_backward(op, x, dy, dx, n);
  };
}

// dropoutMask({ out, p, key0, key1, x? }): dropout's keep-mask (0 or 1 / (1 - p)) from a counter-based hash of the
// keys and each element's index (kernels::dropout_mask), or x times it; 0 <= p < 1, fewer than 2^32 elements.
Kernel ParseDropoutMask(NamedArgs& args) {
  auto out = args.f32("out");
  const double p = args.number("p");
  if (!(p >= 0.0 && p < 1.0)) args.range_error("argument 'p' must be in [0, 1), got " + std::to_string(p));
  const int64_t key0 = args.integer("key0", 0, 0xffffffffLL);
  const int64_t key1 = args.integer("key1", 0, 0xffffffffLL);
  auto x = args.f32_optional("x");
  if (out.length > 0xffffffffLL) {
    args.range_error("argument 'out' must have fewer than 2^32 elements, got " + std::to_string(out.length));
  }
  if (x.given) {
    args.require_length(x, "x", out.length, "out's length");
    args.require_no_overlap(out, "out", x, "x", true);
  }
  if (out.length == 0) return {};
  return [out = out.data, n = out.length, p, k0 = static_cast<uint32_t>(key0), k1 = static_cast<uint32_t>(key1),
          x = x.data] { kernels::dropout_mask(out, n, p, k0, k1, x); };
}

// embeddingBackward({ dy, ids, dweight, num, dim, paddingIdx, dyRowStride? }): dweight [num, dim] (overwritten)
// = scatter-add of the rows of dy [ids.length, dim] by id; row paddingIdx (-1: none) stays 0.
Kernel ParseEmbeddingBackward(NamedArgs& args) {
  const int64_t num = args.integer("num", 0, kMaxElements);
  const int64_t dim = args.integer("dim", 0, kMaxElements);
  const int64_t padding_idx = args.integer("paddingIdx", -1, kMaxElements);
  const int64_t lddy = row_stride(args, "dyRowStride", dim);
  auto dy_span = args.f32("dy");
  auto ids = args.i32("ids");
  auto dweight = args.f32("dweight");
  const Rows dy = strided_rows(args, dy_span, "dy", "dyRowStride", lddy, ids.length, dim);
  args.require_length(dweight, "dweight", checked_mul(args, num, dim, "num*dim"), "num*dim");
  Span<float> dw_used = dweight;
  dw_used.length = num * dim;
  args.require_no_overlap(dw_used, "dweight", dy.used, "dy", false);
  args.require_no_overlap(dw_used, "dweight", ids, "ids", false);
  for (int64_t i = 0; i < ids.length; ++i) {
    const int32_t id = ids.data[i];
    if (id < 0 || id >= num) {
      args.range_error("index " + std::to_string(id) + " at position " + std::to_string(i) +
                       " is out of range for an embedding of " + std::to_string(num) + " rows");
    }
  }
  if (num == 0 || dim == 0) return {};
  return [dy = dy.span.data, lddy, ids = ids.data, n = ids.length, dw = dweight.data, num, dim, padding_idx] {
    const int64_t bad = kernels::embedding_backward(dy, lddy, ids, n, dw, num, dim, padding_idx);
    if (bad >= 0) {
      throw std::runtime_error("embeddingBackward: index " + std::to_string(ids[bad]) + " at position " +
                               std::to_string(bad) + " is out of range for an embedding of " + std::to_string(num) +
                               " rows");
    }
  };
}

}  // namespace attnode::binding
