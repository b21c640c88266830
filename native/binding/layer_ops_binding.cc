// softmax, layerNorm, relu, gelu, binary, embedding, permute0213: validate
// and call the kernels in native/kernels/layer_ops.h.
#include "binding/args.h"
#include "binding/bindings.h"
#include "kernels/elementwise/elementwise.h"
#include "kernels/layout/layout.h"
#include "kernels/norms/norms.h"
#include "kernels/softmax/softmax.h"

#include <stdexcept>
#include <string>
#include <vector>

namespace attnode::binding {
namespace {

constexpr size_t kMaxBinaryDims = 8;

Kernel ParseSoftmax(Args& args) {
  auto x = args.f32(0, "x");
  auto y = args.f32(1, "y");
  const int64_t rows = args.integer(2, "rows", 0, kMaxElements);
  const int64_t cols = args.integer(3, "cols", 0, kMaxElements);
  const int64_t size = checked_mul(args, rows, cols, "rows*cols");
  args.require_length(x, "x", size, "rows*cols");
  args.require_length(y, "y", size, "rows*cols");
  args.require_no_overlap(y, "y", x, "x", true);
  if (size == 0) return {};
  return [x = x.data, y = y.data, rows, cols] { kernels::softmax_rows(x, y, rows, cols); };
}

// The checks layerNorm and addLayerNorm share: eps, the optional per-column
// gamma/beta, and an output `out` that must not overlap them.
double check_norm_params(const Args& args, double eps, const Span<float>& gamma, const Span<float>& beta, int64_t cols,
                         const Span<float>& out, const char* out_name) {
  if (!(eps >= 0)) args.range_error("argument 'eps' must be a number >= 0, got " + std::to_string(eps));
  if (gamma.given) args.require_length(gamma, "gamma", cols, "cols");
  if (beta.given) args.require_length(beta, "beta", cols, "cols");
  if (gamma.given) args.require_no_overlap(out, out_name, gamma, "gamma", false);
  if (beta.given) args.require_no_overlap(out, out_name, beta, "beta", false);
  return eps;
}

Kernel ParseLayerNorm(Args& args) {
  auto x = args.f32(0, "x");
  auto gamma = args.f32_or_null(1, "gamma");
  auto beta = args.f32_or_null(2, "beta");
  auto y = args.f32(3, "y");
  const int64_t rows = args.integer(4, "rows", 0, kMaxElements);
  const int64_t cols = args.integer(5, "cols", 0, kMaxElements);
  const double eps = check_norm_params(args, args.number(6, "eps"), gamma, beta, cols, y, "y");
  const int64_t size = checked_mul(args, rows, cols, "rows*cols");
  args.require_length(x, "x", size, "rows*cols");
  args.require_length(y, "y", size, "rows*cols");
  args.require_no_overlap(y, "y", x, "x", true);
  if (size == 0) return {};
  return [x = x.data, g = gamma.data, b = beta.data, y = y.data, rows, cols, e = static_cast<float>(eps)] {
    kernels::layer_norm_rows(x, g, b, y, rows, cols, e);
  };
}

// addLayerNorm(x, r, gamma, beta, y, sum, rows, cols, eps): y = layer_norm(x + r), sum = x + r (or null).
Kernel ParseAddLayerNorm(Args& args) {
  auto x = args.f32(0, "x");
  auto r = args.f32(1, "r");
  auto gamma = args.f32_or_null(2, "gamma");
  auto beta = args.f32_or_null(3, "beta");
  auto y = args.f32(4, "y");
  auto sum = args.f32_or_null(5, "sum");
  const int64_t rows = args.integer(6, "rows", 0, kMaxElements);
  const int64_t cols = args.integer(7, "cols", 0, kMaxElements);
  const double eps = check_norm_params(args, args.number(8, "eps"), gamma, beta, cols, y, "y");
  const int64_t size = checked_mul(args, rows, cols, "rows*cols");
  args.require_length(x, "x", size, "rows*cols");
  args.require_length(r, "r", size, "rows*cols");
  args.require_length(y, "y", size, "rows*cols");
  // Outputs may replace an input exactly (row by row, each row is read before it is written), never
  // overlap it partly, the parameters, or each other.
  args.require_no_overlap(y, "y", x, "x", true);
  args.require_no_overlap(y, "y", r, "r", true);
  if (sum.given) {
    args.require_length(sum, "sum", size, "rows*cols");
    check_norm_params(args, eps, gamma, beta, cols, sum, "sum");
    args.require_no_overlap(sum, "sum", x, "x", true);
    args.require_no_overlap(sum, "sum", r, "r", true);
    args.require_no_overlap(sum, "sum", y, "y", false);
  }
  if (size == 0) return {};
  return [x = x.data, r = r.data, g = gamma.data, b = beta.data, y = y.data, s = sum.data, rows, cols,
          e = static_cast<float>(eps)] { kernels::add_layer_norm_rows(x, r, g, b, y, s, rows, cols, e); };
}

// Shared by relu and gelu: y must have x's length; in place is fine.
void check_unary(const Args& args, const Span<float>& x, const Span<float>& y) {
  if (y.length != x.length) {
    args.range_error("argument 'y' has " + std::to_string(y.length) + " elements, expected x's " +
                     std::to_string(x.length));
  }
  args.require_no_overlap(y, "y", x, "x", true);
}

Kernel ParseRelu(Args& args) {
  auto x = args.f32(0, "x");
  auto y = args.f32(1, "y");
  check_unary(args, x, y);
  if (x.length == 0) return {};
  return [x = x.data, y = y.data, n = x.length] { kernels::relu(x, y, n); };
}

Kernel ParseGelu(Args& args) {
  auto x = args.f32(0, "x");
  auto y = args.f32(1, "y");
  const bool tanh_approx = args.boolean(2, "tanhApprox");
  check_unary(args, x, y);
  if (x.length == 0) return {};
  return [x = x.data, y = y.data, n = x.length, tanh_approx] { kernels::gelu(x, y, n, tanh_approx); };
}

// One past the largest element index reachable with these strides.
int64_t strided_extent(const Args& args, const std::vector<int64_t>& shape, const std::vector<int64_t>& strides) {
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

Kernel ParseBinary(Args& args) {
  const int64_t op = args.integer(0, "op", 0, 3);
  auto a = args.f32(1, "a");
  auto a_strides = args.int_array(2, "aStrides", kMaxBinaryDims, 0, kMaxElements);
  auto b = args.f32(3, "b");
  auto b_strides = args.int_array(4, "bStrides", kMaxBinaryDims, 0, kMaxElements);
  auto y = args.f32(5, "y");
  auto shape = args.int_array(6, "shape", kMaxBinaryDims, 0, kMaxElements);
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

Kernel ParseEmbedding(Args& args) {
  auto weight = args.f32(0, "weight");
  const int64_t num = args.integer(1, "num", 0, kMaxElements);
  const int64_t dim = args.integer(2, "dim", 0, kMaxElements);
  auto ids = args.i32(3, "ids");
  auto out = args.f32(4, "out");
  args.require_length(weight, "weight", checked_mul(args, num, dim, "num*dim"), "num*dim");
  args.require_length(out, "out", checked_mul(args, ids.length, dim, "ids.length*dim"), "ids.length*dim");
  args.require_no_overlap(out, "out", weight, "weight", false);
  for (int64_t i = 0; i < ids.length; ++i) {
    const int32_t id = ids.data[i];
    if (id < 0 || id >= num) {
      args.range_error("index " + std::to_string(id) + " at position " + std::to_string(i) +
                       " is out of range for an embedding of " + std::to_string(num) + " rows");
    }
  }
  if (ids.length == 0 || dim == 0) return {};
  // The kernel checks the ids again: a recorded call runs later, and JS may have changed them.
  return [w = weight.data, num, dim, ids = ids.data, n = ids.length, out = out.data] {
    const int64_t bad = kernels::embedding(w, num, dim, ids, n, out);
    if (bad >= 0) {
      throw std::runtime_error("embedding: index " + std::to_string(ids[bad]) + " at position " + std::to_string(bad) +
                               " is out of range for an embedding of " + std::to_string(num) + " rows");
    }
  };
}

Kernel ParsePermute0213(Args& args) {
  auto x = args.f32(0, "x");
  auto y = args.f32(1, "y");
  int64_t d[4];
  const char* names[4] = {"d0", "d1", "d2", "d3"};
  int64_t size = 1;
  for (int i = 0; i < 4; ++i) {
    d[i] = args.integer(2 + i, names[i], 0, kMaxElements);
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

}  // namespace

void RegisterLayerOps(Napi::Env env, Napi::Object exports) {
  RegisterOp(env, exports, "softmax", 4, ParseSoftmax);
  RegisterOp(env, exports, "layerNorm", 7, ParseLayerNorm);
  RegisterOp(env, exports, "addLayerNorm", 9, ParseAddLayerNorm);
  RegisterOp(env, exports, "relu", 2, ParseRelu);
  RegisterOp(env, exports, "gelu", 3, ParseGelu);
  RegisterOp(env, exports, "binary", 7, ParseBinary);
  RegisterOp(env, exports, "embedding", 5, ParseEmbedding);
  RegisterOp(env, exports, "permute0213", 6, ParsePermute0213);
}

}  // namespace attnode::binding
