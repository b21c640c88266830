// gemm({ a, b, c, m, n, k, transA?, transB?, lda?, ldb?, ldc?, alpha?, beta?, bias?, act?, batch?, strideA?,
//        strideB?, strideC?, packedB?, rowSumsA? })
//   (GemmArgs in lib/backend/backend.ts, defaults as documented there)
// packWeight(b, k, n, transB, precision?) -> packed op(B), an opaque external for packedB
//   precision: 'float32' (default; also for undefined/null) | 'bfloat16' (bf16
//   weights on AVX512-BF16: see kernels/gemm.h; a RangeError when the CPU or
//   the active kernel path cannot run them, so callers check info().bf16 first)
//   | 'int8' (int8 weights, per-column scales: kernels/qgemm/qgemm.h; every
//   kernel path runs them; k at most kQgemmMaxK)
// packedWeightInfo(packed) -> { precision, bytes }
//
// C[i] = act(alpha · op(A[i]) · op(B[i]) + beta · C[i] + bias) for i < batch,
// operands row-major with row strides lda, ldb, ldc (defaults: contiguous,
// lda = transA ? m : k, ldb = transB ? k : n, ldc = n), operand i at offset
// i · stride (stride 0 broadcasts A or B).
#include "binding/args.h"
#include "binding/bindings.h"
#include "kernels/gemm/gemm.h"
#include "kernels/qgemm/qgemm.h"
#include "runtime/cpu_features.h"

#include <string>
#include <utility>
#include <vector>

namespace attnode::binding {
namespace {

constexpr napi_type_tag kPackedBTag = {0x6174746e6f64652eULL, 0x7061636b65646231ULL};

// The external owns one reference to the packed matrix; recorded calls hold another.
struct PackedHolder {
  kernels::PackedBPtr packed;
};

const char* precision_name(kernels::PackedPrecision p) {
  switch (p) {
    case kernels::PackedPrecision::BFloat16:
      return "bfloat16";
    case kernels::PackedPrecision::Int8:
      return "int8";
    default:
      return "float32";
  }
}

// packWeight's precision: bf16 packing also needs the avx512 path active now.
kernels::PackedPrecision parse_precision(const Args& args, size_t i) {
  const Napi::Value v = args.value(i);
  if (v.IsString() && v.As<Napi::String>().Utf8Value() == "int8") return kernels::PackedPrecision::Int8;
  if (!v.IsUndefined() && !v.IsNull() && !v.IsString()) {
    args.type_error("argument 'precision' must be 'float32' | 'bfloat16' | 'int8'");
  }
  if (v.IsString()) {
    const std::string s = v.As<Napi::String>().Utf8Value();
    if (s != "float32" && s != "bfloat16") {
      args.range_error("argument 'precision' must be 'float32' | 'bfloat16' | 'int8', got '" + s + "'");
    }
  }
  if (!args.bf16_precision(i)) return kernels::PackedPrecision::Float32;
  if (!kernels::bf16_gemm_available()) {
    args.range_error(std::string("precision 'bfloat16' needs the 'avx512' kernel path, but the active path is '") +
                     runtime::isa_name(runtime::active_isa()) + "' (lowered by setIsa or ATTNODE_ISA)");
  }
  return kernels::PackedPrecision::BFloat16;
}

const PackedHolder* packed_holder(const ArgsBase& args, const Napi::Value& v, const char* name) {
  if (!v.IsExternal() || !v.As<Napi::Object>().CheckTypeTag(&kPackedBTag)) {
    args.type_error(std::string("argument '") + name + "' must be a packed weight from packWeight()");
  }
  return v.As<Napi::External<PackedHolder>>().Data();
}

Napi::Value PackWeight(const Napi::CallbackInfo& info) {
  Args args(info, "packWeight", 4, 1);
  auto b = args.f32(0, "b");
  const int64_t k = args.integer(1, "k", 1, kMaxElements);
  const int64_t n = args.integer(2, "n", 1, kMaxElements);
  const bool trans_b = args.boolean(3, "transB");
  const kernels::PackedPrecision precision = parse_precision(args, 4);
  args.require_length(b, "b", checked_mul(args, k, n, "k*n"), "k*n");
  if (precision == kernels::PackedPrecision::Int8 && k > kernels::kQgemmMaxK) {
    args.range_error("argument 'k' is " + std::to_string(k) + ", but precision 'int8' needs k <= " +
                     std::to_string(kernels::kQgemmMaxK) + " (127 * 127 * k must fit the int32 accumulators)");
  }
  kernels::PackedBPtr packed;
  switch (precision) {
    case kernels::PackedPrecision::BFloat16:
      packed = kernels::pack_b_bf16(b.data, trans_b ? k : n, trans_b, k, n);
      break;
    case kernels::PackedPrecision::Int8:
      packed = kernels::pack_b_int8(b.data, trans_b ? k : n, trans_b, k, n);
      break;
    default:
      packed = kernels::pack_b(b.data, trans_b ? k : n, trans_b, k, n);
  }
  // k, n >= 1 and availability were checked: null cannot happen, but never
  // hand JS an external that would dereference it.
  if (!packed) args.range_error("packing failed");
  const int64_t bytes = static_cast<int64_t>(kernels::packed_b_bytes(*packed));
  Napi::Env env = info.Env();
  auto ext = Napi::External<PackedHolder>::New(env, new PackedHolder{packed}, [bytes](Napi::Env e, PackedHolder* h) {
    Napi::MemoryManagement::AdjustExternalMemory(e, -bytes);
    delete h;
  });
  ext.TypeTag(&kPackedBTag);
  // Tell V8's GC what the external holds, so dropped weights are collected promptly.
  Napi::MemoryManagement::AdjustExternalMemory(env, bytes);
  return ext;
}

Napi::Value PackedWeightInfo(const Napi::CallbackInfo& info) {
  Args args(info, "packedWeightInfo", 1);
  const kernels::PackedB& packed = *packed_holder(args, args.value(0), "packed")->packed;
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("precision", precision_name(kernels::packed_b_precision(packed)));
  out.Set("bytes", Napi::Number::New(env, static_cast<double>(kernels::packed_b_bytes(packed))));
  return out;
}

// Elements spanned by `batch` operands of `per` elements spaced `stride` apart.
int64_t batched_extent(const ArgsBase& args, int64_t batch, int64_t stride, int64_t per, const char* what) {
  if (batch == 0 || per == 0) return 0;
  return checked_mul(args, batch - 1, stride, what) + per;
}

// Elements one operand stored as `rows` rows of `cols` spaced `ld` apart spans.
int64_t matrix_extent(const ArgsBase& args, int64_t rows, int64_t cols, int64_t ld, const char* what) {
  if (rows == 0 || cols == 0) return 0;
  return checked_mul(args, rows - 1, ld, what) + cols;
}

// A leading dimension: defaults to the stored row length `cols`, and must be at least that.
int64_t leading_dim(const NamedArgs& args, const char* name, int64_t cols, const char* cols_expr) {
  const int64_t ld = args.integer_or(name, cols, 0, kMaxElements);
  if (ld < cols) {
    args.range_error(std::string("argument '") + name + "' is " + std::to_string(ld) + ", expected at least " +
                     cols_expr + " = " + std::to_string(cols));
  }
  return ld;
}

}  // namespace

namespace {

// One GEMM's checked arguments: the kernel call, what keeps a packed B alive, and the memory it reads and writes
// (for a group's checks across its calls).
struct ParsedGemm {
  kernels::GemmCall call;
  kernels::PackedBPtr packed;
  bool empty = true;  // nothing to compute
  Span<float> a, b, c_used, bias, sums_used;
};

ParsedGemm parse_gemm(NamedArgs& args) {
  // Scalars first, the arrays last: an array checked after the last property
  // read needs no re-check (see require_unchanged).
  const int64_t m = args.integer("m", 0, kMaxElements);
  const int64_t n = args.integer("n", 0, kMaxElements);
  const int64_t k = args.integer("k", 0, kMaxElements);
  const bool trans_a = args.boolean_or("transA", false);
  const bool trans_b = args.boolean_or("transB", false);
  // Stored shapes: A is [m, k] ([k, m] when transA), B is [k, n] ([n, k] when transB), C is [m, n].
  const int64_t lda = leading_dim(args, "lda", trans_a ? m : k, trans_a ? "m (transA)" : "k");
  const int64_t ldb = leading_dim(args, "ldb", trans_b ? k : n, trans_b ? "k (transB)" : "n");
  const int64_t ldc = leading_dim(args, "ldc", n, "n");
  const double alpha = args.number_or("alpha", 1.0);
  const double beta = args.number_or("beta", 0.0);
  const int64_t act = args.integer_or("act", 0, 0, 3);
  const int64_t batch = args.integer_or("batch", 1, 0, kMaxElements);
  const int64_t stride_a = args.integer_or("strideA", 0, 0, kMaxElements);
  const int64_t stride_b = args.integer_or("strideB", 0, 0, kMaxElements);
  const int64_t stride_c = args.integer_or("strideC", 0, 0, kMaxElements);
  ParsedGemm r;
  Napi::Value pv = args.value("packedB");
  if (!pv.IsNull() && !pv.IsUndefined()) {
    if (!pv.IsExternal() || !pv.As<Napi::Object>().CheckTypeTag(&kPackedBTag)) {
      args.type_error("argument 'packedB' must be null or a packed weight from packWeight()");
    }
    r.packed = pv.As<Napi::External<PackedHolder>>().Data()->packed;
    if (!kernels::packed_b_matches(*r.packed, k, n, trans_b)) {
      args.range_error(
          "argument 'packedB' was packed for a different shape or transpose than this call's k, n, transB");
    }
    if (batch > 1 && stride_b != 0) args.range_error("argument 'packedB' needs one B for every batch item (strideB 0)");
    // packWeight packs a contiguous B; another ldb would describe another matrix.
    if (ldb != (trans_b ? k : n)) {
      args.range_error("argument 'packedB' was packed from a contiguous B, but ldb is " + std::to_string(ldb) +
                       ", expected " + std::to_string(trans_b ? k : n));
    }
  }
  auto a = args.f32("a");
  auto b = args.f32("b");
  auto c = args.f32("c");
  auto bias = args.f32_optional("bias");
  auto row_sums = args.f32_optional("rowSumsA");

  const int64_t size_a = matrix_extent(args, trans_a ? k : m, trans_a ? m : k, lda, "extent of a");
  const int64_t size_b = matrix_extent(args, trans_b ? n : k, trans_b ? k : n, ldb, "extent of b");
  const int64_t size_c = matrix_extent(args, m, n, ldc, "extent of c");
  // Also bounds every product the kernel forms from the sizes.
  checked_mul(args, m, k, "m*k");
  checked_mul(args, k, n, "k*n");
  checked_mul(args, m, n, "m*n");
  if (batch > 1 && stride_c < size_c) {
    args.range_error("argument 'strideC' is " + std::to_string(stride_c) + ", expected at least (m-1)*ldc + n = " +
                     std::to_string(size_c) + " so that batch outputs do not overlap");
  }
  args.require_length(a, "a", batched_extent(args, batch, stride_a, size_a, "extent of a"),
                      "batch, m, k, lda, strideA");
  args.require_length(b, "b", batched_extent(args, batch, stride_b, size_b, "extent of b"),
                      "batch, k, n, ldb, strideB");
  const int64_t extent_c = batched_extent(args, batch, stride_c, size_c, "extent of c");
  args.require_length(c, "c", extent_c, "batch, m, n, ldc, strideC");
  if (bias.given) args.require_length(bias, "bias", n, "n");
  // Only the region actually written matters for aliasing.
  Span<float> c_used = c;
  c_used.length = extent_c;
  args.require_no_overlap(c_used, "c", a, "a", false);
  args.require_no_overlap(c_used, "c", b, "b", false);
  if (bias.given) args.require_no_overlap(c_used, "c", bias, "bias", false);
  Span<float> sums_used;
  if (row_sums.given) {
    if (batch > 1) args.range_error("argument 'rowSumsA' needs batch 1, got batch " + std::to_string(batch));
    args.require_length(row_sums, "rowSumsA", m, "m");
    sums_used = row_sums;
    sums_used.length = m;
    args.require_no_overlap(sums_used, "rowSumsA", a, "a", false);
    args.require_no_overlap(sums_used, "rowSumsA", b, "b", false);
    args.require_no_overlap(sums_used, "rowSumsA", c_used, "c", false);
    if (bias.given) args.require_no_overlap(sums_used, "rowSumsA", bias, "bias", false);
  }
  r.a = a;
  r.b = b;
  r.c_used = c_used;
  r.bias = bias;
  r.sums_used = sums_used;
  if (batch == 0 || (size_c == 0 && !(row_sums.given && m > 0))) return r;

  kernels::GemmParams& p = r.call.p;
  p.m = m;
  p.n = n;
  p.k = k;
  p.a = a.data;
  p.lda = lda;
  p.trans_a = trans_a;
  p.b = b.data;
  p.ldb = ldb;
  p.trans_b = trans_b;
  p.c = c.data;
  p.ldc = ldc;
  p.alpha = static_cast<float>(alpha);
  p.beta = static_cast<float>(beta);
  p.bias = bias.data;
  p.act = static_cast<kernels::Activation>(act);
  if (row_sums.given) p.row_sums_a = row_sums.data;
  if (r.packed) p.packed_b = r.packed.get();
  r.call.batch = batch;
  r.call.stride_a = stride_a;
  r.call.stride_b = stride_b;
  r.call.stride_c = stride_c;
  r.empty = false;
  return r;
}

// The most GEMMs one gemmGroup call takes (its error messages name each by index).
constexpr int kMaxGroup = 8;
const char* const kGroupNames[kMaxGroup] = {
    "gemmGroup: gemms[0]", "gemmGroup: gemms[1]", "gemmGroup: gemms[2]", "gemmGroup: gemms[3]",
    "gemmGroup: gemms[4]", "gemmGroup: gemms[5]", "gemmGroup: gemms[6]", "gemmGroup: gemms[7]",
};

}  // namespace

Kernel ParseGemm(NamedArgs& args) {
  ParsedGemm g = parse_gemm(args);
  if (g.empty) return {};
  const kernels::GemmCall call = g.call;
  // The closure keeps the packed matrix alive for a recorded call.
  const kernels::PackedBPtr packed = g.packed;
  if (call.batch == 1) return [call, packed] { kernels::sgemm(call.p); };
  return [call, packed] { kernels::sgemm_batched(call.p, call.batch, call.stride_a, call.stride_b, call.stride_c); };
}

Kernel ParseGemmGroup(NamedArgs& args) {
  Napi::Value list = args.value("gemms");
  if (!list.IsArray()) args.type_error(std::string("argument 'gemms' must be an array of gemm arguments, got ") + type_name(list));
  Napi::Array arr = list.As<Napi::Array>();
  const uint32_t count = arr.Length();
  if (count < 1 || count > kMaxGroup) {
    args.range_error("argument 'gemms' must hold 1 to " + std::to_string(kMaxGroup) + " gemm arguments, got " +
                     std::to_string(count));
  }
  std::vector<ParsedGemm> parsed;
  parsed.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    args.note_read();
    Napi::Value item = arr.Get(i);
    if (!item.IsObject() || item.IsArray() || item.IsTypedArray() || item.IsFunction()) {
      args.type_error(std::string("argument 'gemms[") + std::to_string(i) + "]' must be an object of gemm arguments, got " +
                      type_name(item));
    }
    // The same ArgsBase reads every item: its checks of arrays against later reads cover the whole group.
    NamedArgs::Scope scope(args, item.As<Napi::Object>(), kGroupNames[i]);
    parsed.push_back(parse_gemm(args));
  }
  // The calls run at once: none may write what another reads or writes.
  for (uint32_t i = 0; i < count; ++i) {
    for (uint32_t j = 0; j < count; ++j) {
      if (i == j) continue;
      NamedArgs::Scope scope(args, args.object(), kGroupNames[i]);
      const ParsedGemm& w = parsed[i];
      const ParsedGemm& o = parsed[j];
      const std::string other = "of gemms[" + std::to_string(j) + "]";
      for (const auto& [out, out_name] : {std::pair{w.c_used, "c"}, std::pair{w.sums_used, "rowSumsA"}}) {
        if (!out.given) continue;
        for (const auto& [in, in_name] : {std::pair{o.a, "a"}, std::pair{o.b, "b"}, std::pair{o.c_used, "c"},
                                          std::pair{o.bias, "bias"}, std::pair{o.sums_used, "rowSumsA"}}) {
          if (!in.given) continue;
          const std::string name = std::string(in_name) + " " + other;
          args.require_no_overlap(out, out_name, in, name.c_str(), false);
        }
      }
    }
  }
  std::vector<kernels::GemmCall> calls;
  std::vector<kernels::PackedBPtr> packed;
  for (const ParsedGemm& g : parsed) {
    if (g.empty) continue;
    calls.push_back(g.call);
    if (g.packed) packed.push_back(g.packed);
  }
  if (calls.empty()) return {};
  return [calls = std::move(calls), packed = std::move(packed)] {
    kernels::sgemm_group(calls.data(), static_cast<int>(calls.size()));
  };
}

void RegisterPackedWeights(Napi::Env env, Napi::Object exports) {
  exports.Set("packWeight", Napi::Function::New(env, PackWeight, "packWeight"));
  exports.Set("packedWeightInfo", Napi::Function::New(env, PackedWeightInfo, "packedWeightInfo"));
}

}  // namespace attnode::binding
