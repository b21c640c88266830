// Argument validation for the binding layer. Native code never trusts JS:
// every size, dtype, length and overlap is checked here, before a kernel sees
// a pointer. A failed check throws a JS TypeError/RangeError (via
// Napi::Error::ThrowAsJavaScriptException through C++ exceptions) whose message
// names the function, the argument, what was expected and what was given.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace attnode::binding {

// Largest dimension / element count accepted from JS. Tensors hold at most
// 2^31-1 elements; the margin keeps every product of checked sizes in int64.
constexpr int64_t kMaxElements = (int64_t{1} << 31) - 1;

template <typename T>
struct Span {
  T* data = nullptr;
  int64_t length = 0;            // in elements
  const void* buffer = nullptr;  // backing ArrayBuffer's base, for overlap checks
  int64_t byte_offset = 0;
  // The argument was a typed array (possibly empty or detached), not null/undefined:
  // an optional input that was given must be checked, never treated as absent.
  bool given = false;
  // Range [begin, end) in bytes inside the backing buffer.
  int64_t byte_begin() const { return byte_offset; }
  int64_t byte_end() const { return byte_offset + length * static_cast<int64_t>(sizeof(T)); }
};

// A typed array a recorded call reads or writes: kept alive until the call
// has run, with the memory it was validated against, so submit can refuse a
// list whose buffers were detached or shrunk in between.
struct KeptArray {
  Napi::Reference<Napi::Value> ref;
  const void* data = nullptr;
  size_t byte_length = 0;
};
using KeepAlive = std::vector<KeptArray>;

// Base pointer and byte length of a typed array's memory, read through
// napi_get_typedarray_info (works for ArrayBuffer and SharedArrayBuffer
// backing alike); data is null and length 0 when detached.
struct TypedArrayMemory {
  void* data = nullptr;
  size_t byte_length = 0;
  size_t byte_offset = 0;
  size_t element_length = 0;
  napi_typedarray_type type = napi_int8_array;
};
TypedArrayMemory typed_array_memory(Napi::Env env, const Napi::Value& v);

// A number as JS prints it (2147483648, 1.5, NaN, -Infinity), for messages.
std::string js_number(double d);

// What `v` is, for messages: "Float32Array", "number", "undefined", ...
const char* type_name(const Napi::Value& v);

// What every argument reader shares: the function's name for messages, the
// errors, the length and overlap checks, and the checks of one JS value
// (named `name` in messages) against the type it must have.
class ArgsBase {
 public:
  // When `keep` is set every typed array parsed is referenced there, so a call
  // recorded now and run later on another thread cannot outlive its buffers.
  ArgsBase(Napi::Env env, const char* fn, KeepAlive* keep) : env_(env), fn_(fn), keep_(keep) {}

  Napi::Env env() const { return env_; }
  const char* fn() const { return fn_; }

  // Notes that a check used typed array `v` (argument `name`, a string
  // literal) with memory `mem`: referenced for a recorded call, and
  // re-checked by require_unchanged().
  void use_array(const Napi::Value& v, const TypedArrayMemory& mem, const char* name) const;

  // Reading an argument object can run JS (a getter, a Proxy trap), which
  // could detach or shrink an array already checked. Called once every
  // argument has been read: a TypeError if any array's memory changed since
  // its check, so no kernel is handed a pointer that was freed meanwhile.
  void require_unchanged() const;

  // Notes a read that can run JS (a property or element get): arrays checked
  // before it are re-checked by require_unchanged(), arrays checked after the
  // last one need not be.
  void note_read() const { ++reads_; }

  [[noreturn]] void range_error(const std::string& message) const;
  [[noreturn]] void type_error(const std::string& message) const;

  // Checks that `span` holds at least `needed` elements.
  template <typename T>
  void require_length(const Span<T>& span, const char* name, int64_t needed, const std::string& why) const {
    if (span.length < needed) length_error(name, span.length, needed, why);
  }

  // Rejects partial overlap between an output and an input. Exact aliasing
  // (same start, both covering the same elements) is allowed only when
  // `allow_exact` is set: the in-place elementwise case.
  template <typename T, typename U>
  void require_no_overlap(const Span<T>& out, const char* out_name, const Span<U>& in, const char* in_name,
                          bool allow_exact) const {
    if (!out.buffer || out.buffer != in.buffer) return;
    if (out.byte_end() <= in.byte_begin() || in.byte_end() <= out.byte_begin()) return;
    if (out.length == 0 || in.length == 0) return;
    if (allow_exact && out.byte_begin() == in.byte_begin()) return;
    overlap_error(out_name, in_name, allow_exact);
  }

  // The checks of one value.
  Span<float> f32_value(const Napi::Value& v, const char* name) const;
  Span<int32_t> i32_value(const Napi::Value& v, const char* name) const;
  double number_value(const Napi::Value& v, const char* name) const;
  // An integer in [min, max].
  int64_t integer_value(const Napi::Value& v, const char* name, int64_t min, int64_t max) const;
  // `d` (a number already read) as an integer in [min, max].
  int64_t checked_integer(double d, const char* name, int64_t min, int64_t max) const;
  bool boolean_value(const Napi::Value& v, const char* name) const;
  // A precision 'float32' | 'bfloat16' (undefined or null: float32): true
  // for 'bfloat16'. A TypeError for a non-string, a RangeError for another
  // string or when the CPU has no AVX512-BF16.
  bool bf16_value(const Napi::Value& v, const char* name) const;
  // A JS array of integers, each in [min, max], with at most max_len entries.
  std::vector<int64_t> int_array_value(const Napi::Value& v, const char* name, size_t max_len, int64_t min,
                                       int64_t max) const;

 protected:
  void set_fn(const char* fn) { fn_ = fn; }

  // The span of a typed array already checked, referenced for a recorded call.
  template <typename T>
  Span<T> given_array(const Napi::Value& v, const TypedArrayMemory& mem, const char* name) const;

 private:
  [[noreturn]] void length_error(const char* name, int64_t actual, int64_t needed, const std::string& why) const;
  [[noreturn]] void overlap_error(const char* out_name, const char* in_name, bool allow_exact) const;

  struct UsedArray {
    napi_value value;
    const void* data;
    size_t byte_length;
    const char* name;
    uint32_t reads;  // note_read() count when it was checked
  };

  Napi::Env env_;
  const char* fn_;
  KeepAlive* keep_;
  // Inline room for every op's arrays (attention's 5 plus 2 masks); more
  // spill into used_more_.
  mutable UsedArray used_[8];
  mutable size_t used_count_ = 0;
  mutable std::vector<UsedArray> used_more_;
  mutable uint32_t reads_ = 0;
};

// Positional arguments: the runtime controls and packWeight, which take a
// few scalars each.
class Args : public ArgsBase {
 public:
  // The call must have `expected_count` arguments, or up to
  // `optional_count` more (left out, they read as undefined).
  Args(const Napi::CallbackInfo& info, const char* fn, size_t expected_count, size_t optional_count = 0);

  Span<float> f32(size_t i, const char* name) const { return f32_value(arg(i), name); }
  int64_t integer(size_t i, const char* name, int64_t min, int64_t max) const {
    return integer_value(arg(i), name, min, max);
  }
  bool boolean(size_t i, const char* name) const { return boolean_value(arg(i), name); }
  bool bf16_precision(size_t i) const { return bf16_value(arg(i), "precision"); }
  Napi::Value value(size_t i) const { return arg(i); }

 private:
  Napi::Value arg(size_t i) const { return info_[i]; }
  const Napi::CallbackInfo& info_;
};

// The one argument object of an op: `op({ a, b, c, m, ... })`, or
// `opRecord(list, { ... })`. Each field is read once (one property get) by
// the accessor that checks it; a missing required field reads as undefined
// and fails its type check, naming it. Fields the op does not know are
// ignored.
class NamedArgs : public ArgsBase {
 public:
  // info[index] must be the only argument after the command list (if any),
  // and an object.
  NamedArgs(const Napi::CallbackInfo& info, const char* fn, size_t index, KeepAlive* keep);

  Span<float> f32(const char* name) const { return f32_value(get(name), name); }
  // Optional (`name?: Float32Array | null`): undefined or null give an empty
  // span with given == false; a typed array, even empty or detached, is
  // given and is checked like a required one.
  Span<float> f32_optional(const char* name) const;
  // Required but nullable (`name: Float32Array | null`): null is absent,
  // undefined (the field left out) is a TypeError.
  Span<float> f32_or_null(const char* name) const;
  Span<int32_t> i32(const char* name) const { return i32_value(get(name), name); }
  // Optional Int32Array, like f32_optional.
  Span<int32_t> i32_optional(const char* name) const;
  int64_t integer(const char* name, int64_t min, int64_t max) const { return integer_value(get(name), name, min, max); }
  // Optional: undefined gives `fallback` (null is a wrong type, as for any number).
  int64_t integer_or(const char* name, int64_t fallback, int64_t min, int64_t max) const;
  double number(const char* name) const { return number_value(get(name), name); }
  double number_or(const char* name, double fallback) const;
  bool boolean(const char* name) const { return boolean_value(get(name), name); }
  bool boolean_or(const char* name, bool fallback) const;
  bool bf16_precision(const char* name) const { return bf16_value(get(name), name); }
  std::vector<int64_t> int_array(const char* name, size_t max_len, int64_t min, int64_t max) const {
    return int_array_value(get(name), name, max_len, min, max);
  }
  // The raw field, for the few that are objects.
  Napi::Value value(const char* name) const { return get(name); }
  // The argument object the fields are read from.
  Napi::Object object() const { return obj_; }

  // While it lives, the fields are read from `obj` (an op whose argument holds other ops' argument objects, as
  // gemmGroup's `gemms`) and errors name `fn` (a string literal). Every array is still checked through these args,
  // so require_unchanged covers all of them.
  class Scope {
   public:
    Scope(NamedArgs& args, Napi::Object obj, const char* fn) : args_(args), obj_(args.obj_), fn_(args.fn()) {
      args_.obj_ = obj;
      args_.set_fn(fn);
    }
    ~Scope() {
      args_.obj_ = obj_;
      args_.set_fn(fn_);
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    NamedArgs& args_;
    Napi::Object obj_;
    const char* fn_;
  };

 private:
  Napi::Value get(const char* name) const;
  Napi::Object obj_;
};

// a * b, throwing a RangeError through `args` if it leaves [0, kMaxElements].
int64_t checked_mul(const ArgsBase& args, int64_t a, int64_t b, const char* what);

}  // namespace attnode::binding
