// crossEntropy, crossEntropyBackward: validate each op's argument object (the
// OpArgs entries of lib/backend/backend.ts) and call the kernels in
// native/kernels/loss/.
#include <stdexcept>
#include <string>

#include "binding/args.h"
#include "binding/bindings.h"
#include "binding/rows.h"
#include "kernels/loss/loss.h"

namespace attnode::binding {
namespace {

// The operands both directions share: logits rows, targets (one per row, each a class in [0, cols) or
// ignoreIndex), the optional class weights, the smoothing.
struct CrossEntropyOperands {
  int64_t rows = 0, cols = 0, ignore_index = 0;
  double label_smoothing = 0;
  Rows logits;
  Span<int32_t> target;
  Span<float> weight;
};

CrossEntropyOperands parse_cross_entropy(NamedArgs& args) {
  CrossEntropyOperands o;
  o.rows = args.integer("rows", 0, kMaxElements);
  o.cols = args.integer("cols", 0, kMaxElements);
  o.ignore_index = args.integer("ignoreIndex", INT32_MIN, INT32_MAX);
  o.label_smoothing = args.number("labelSmoothing");
  if (!(o.label_smoothing >= 0.0 && o.label_smoothing <= 1.0)) {
    args.range_error("argument 'labelSmoothing' must be in [0, 1], got " + js_number(o.label_smoothing));
  }
  const int64_t ldx = row_stride(args, "logitsRowStride", o.cols);
  auto logits = args.f32("logits");
  o.target = args.i32("target");
  o.weight = args.f32_or_null("weight");
  o.logits = strided_rows(args, logits, "logits", "logitsRowStride", ldx, o.rows, o.cols);
  args.require_length(o.target, "target", o.rows, "rows");
  if (o.weight.given) args.require_length(o.weight, "weight", o.cols, "cols");
  for (int64_t i = 0; i < o.rows; ++i) {
    const int32_t t = o.target.data[i];
    if (t != o.ignore_index && (t < 0 || t >= o.cols)) {
      args.range_error("target " + std::to_string(t) + " at position " + std::to_string(i) + " is neither a class in [0, " +
                       std::to_string(o.cols) + ") nor ignoreIndex " + std::to_string(o.ignore_index));
    }
  }
  return o;
}

// An output vector of `n` floats that must not overlap the inputs.
Span<float> output_vector(const NamedArgs& args, const CrossEntropyOperands& o, const char* name, int64_t n) {
  Span<float> s = args.f32(name);
  args.require_length(s, name, n, "rows");
  Span<float> used = s;
  used.length = n;
  args.require_no_overlap(used, name, o.logits.used, "logits", false);
  args.require_no_overlap(used, name, o.target, "target", false);
  if (o.weight.given) args.require_no_overlap(used, name, o.weight, "weight", false);
  return used;
}

[[noreturn]] void bad_target(const char* fn, const int32_t* target, int64_t at, int64_t cols) {
  throw std::runtime_error(std::string(fn) + ": target " + std::to_string(target[at]) + " at position " +
                           std::to_string(at) + " is not a class in [0, " + std::to_string(cols) + ")");
}

}  // namespace

// crossEntropy({ logits, target, weight, ignoreIndex, labelSmoothing, loss, lse, rows, cols, logitsRowStride? }):
// per-row losses and log-sum-exps (see kernels/loss/loss.h).
Kernel ParseCrossEntropy(NamedArgs& args) {
  CrossEntropyOperands o = parse_cross_entropy(args);
  const Span<float> loss = output_vector(args, o, "loss", o.rows);
  const Span<float> lse = output_vector(args, o, "lse", o.rows);
  args.require_no_overlap(loss, "loss", lse, "lse", false);
  if (o.rows == 0) return {};
  return [x = o.logits.span.data, ldx = o.logits.ld, t = o.target.data, w = o.weight.data, ii = o.ignore_index,
          eps = static_cast<float>(o.label_smoothing), loss = loss.data, lse = lse.data, rows = o.rows, cols = o.cols] {
    const int64_t bad = kernels::cross_entropy_rows(x, ldx, t, w, ii, eps, loss, lse, rows, cols);
    if (bad >= 0) bad_target("crossEntropy", t, bad, cols);
  };
}

// crossEntropyBackward({ logits, lse, target, weight, ignoreIndex, labelSmoothing, dloss, dlossStride, dlogits,
// rows, cols, logitsRowStride?, dlogitsRowStride? }): dlossStride 0 (one gradient for every row) or 1.
Kernel ParseCrossEntropyBackward(NamedArgs& args) {
  CrossEntropyOperands o = parse_cross_entropy(args);
  const int64_t dloss_stride = args.integer("dlossStride", 0, 1);
  const int64_t lddx = row_stride(args, "dlogitsRowStride", o.cols);
  auto lse = args.f32("lse");
  auto dloss = args.f32("dloss");
  auto dlogits = args.f32("dlogits");
  args.require_length(lse, "lse", o.rows, "rows");
  args.require_length(dloss, "dloss", o.rows == 0 ? 0 : (dloss_stride == 0 ? 1 : o.rows), "rows (1 with dlossStride 0)");
  const Rows dx = strided_rows(args, dlogits, "dlogits", "dlogitsRowStride", lddx, o.rows, o.cols);
  check_rows_in_out(args, o.logits, "logits", dx, "dlogits");
  args.require_no_overlap(dx.used, "dlogits", lse, "lse", false);
  args.require_no_overlap(dx.used, "dlogits", dloss, "dloss", false);
  args.require_no_overlap(dx.used, "dlogits", o.target, "target", false);
  if (o.weight.given) args.require_no_overlap(dx.used, "dlogits", o.weight, "weight", false);
  if (o.rows == 0 || o.cols == 0) return {};
  return [x = o.logits.span.data, ldx = o.logits.ld, lse = lse.data, t = o.target.data, w = o.weight.data,
          ii = o.ignore_index, eps = static_cast<float>(o.label_smoothing), dl = dloss.data, dloss_stride,
          dx = dx.span.data, lddx = dx.ld, rows = o.rows, cols = o.cols] {
    const int64_t bad =
        kernels::cross_entropy_backward_rows(x, ldx, lse, t, w, ii, eps, dl, dloss_stride, dx, lddx, rows, cols);
    if (bad >= 0) bad_target("crossEntropyBackward", t, bad, cols);
  };
}

}  // namespace attnode::binding
