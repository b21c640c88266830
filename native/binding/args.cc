#include "binding/args.h"

#include "runtime/cpu_features.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <sstream>

namespace attnode::binding {

// A number as JS prints it: 2147483648, 1.5, NaN, -Infinity.
std::string js_number(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", d);
  // The shortest form that reads back the same, as JS's Number#toString.
  for (int precision = 1; precision < 17; ++precision) {
    char shorter[32];
    std::snprintf(shorter, sizeof shorter, "%.*g", precision, d);
    if (std::strtod(shorter, nullptr) == d) return shorter;
  }
  return buf;
}

const char* type_name(const Napi::Value& v) {
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsBoolean()) return "boolean";
  if (v.IsNumber()) return "number";
  if (v.IsString()) return "string";
  if (v.IsArray()) return "Array";
  if (v.IsTypedArray()) {
    switch (v.As<Napi::TypedArray>().TypedArrayType()) {
      case napi_int8_array:
        return "Int8Array";
      case napi_uint8_array:
        return "Uint8Array";
      case napi_uint8_clamped_array:
        return "Uint8ClampedArray";
      case napi_int16_array:
        return "Int16Array";
      case napi_uint16_array:
        return "Uint16Array";
      case napi_int32_array:
        return "Int32Array";
      case napi_uint32_array:
        return "Uint32Array";
      case napi_float32_array:
        return "Float32Array";
      case napi_float64_array:
        return "Float64Array";
      default:
        return "TypedArray";
    }
  }
  if (v.IsArrayBuffer()) return "ArrayBuffer";
  if (v.IsFunction()) return "function";
  if (v.IsObject()) return "object";
  return "value";
}

namespace {

// Reads a typed array's type and memory in one call (napi_get_typedarray_info
// fails, without throwing, when `v` is not a typed array): the type check and
// the pointer come from the same query.
bool typed_array_info(napi_env env, napi_value v, TypedArrayMemory* m) {
  napi_value arraybuffer;
  if (napi_get_typedarray_info(env, v, &m->type, &m->element_length, &m->data, &arraybuffer, &m->byte_offset) !=
      napi_ok) {
    return false;
  }
  if (m->data == nullptr) m->element_length = 0;
  size_t item = 1;
  switch (m->type) {
    case napi_int16_array:
    case napi_uint16_array:
      item = 2;
      break;
    case napi_int32_array:
    case napi_uint32_array:
    case napi_float32_array:
      item = 4;
      break;
    case napi_float64_array:
    case napi_bigint64_array:
    case napi_biguint64_array:
      item = 8;
      break;
    default:
      break;
  }
  m->byte_length = m->element_length * item;
  return true;
}

template <typename T>
Span<T> typed_span(const TypedArrayMemory& mem) {
  Span<T> s;
  s.given = true;
  // A detached buffer reports a null base: the span stays empty, so any
  // non-zero length requirement fails before a pointer is used.
  if (mem.data == nullptr) return s;
  s.data = static_cast<T*>(mem.data);
  s.length = static_cast<int64_t>(mem.element_length);
  s.byte_offset = static_cast<int64_t>(mem.byte_offset);
  s.buffer = static_cast<uint8_t*>(mem.data) - mem.byte_offset;
  return s;
}

}  // namespace

TypedArrayMemory typed_array_memory(Napi::Env env, const Napi::Value& v) {
  TypedArrayMemory m;
  if (!typed_array_info(env, v, &m)) throw Napi::TypeError::New(env, "attnode: expected a typed array");
  return m;
}

Args::Args(const Napi::CallbackInfo& info, const char* fn, size_t expected_count, size_t optional_count)
    : ArgsBase(info.Env(), fn, nullptr), info_(info) {
  const size_t given = info.Length();
  if (given < expected_count || given > expected_count + optional_count) {
    std::ostringstream m;
    m << "expected " << expected_count;
    if (optional_count) m << " to " << expected_count + optional_count;
    m << " arguments, got " << given;
    type_error(m.str());
  }
}

NamedArgs::NamedArgs(const Napi::CallbackInfo& info, const char* fn, size_t index, KeepAlive* keep)
    : ArgsBase(info.Env(), fn, keep) {
  if (info.Length() != index + 1) {
    std::ostringstream m;
    m << "expected " << index + 1 << (index ? " arguments (a command list and " : " argument (")
      << "an object of named arguments), got " << info.Length();
    type_error(m.str());
  }
  Napi::Value v = info[index];
  // Arrays and typed arrays are objects too, but never an argument object:
  // most likely a call in the old positional form.
  if (!v.IsObject() || v.IsArray() || v.IsTypedArray() || v.IsFunction()) {
    type_error(std::string("the argument must be an object of named arguments, got ") + type_name(v));
  }
  obj_ = v.As<Napi::Object>();
}

// One napi_get_named_property per field (~0.1 µs each; a key cached across
// calls would save about a third, but N-API 8 cannot keep a reference to a
// string, and fetching one from a referenced array costs another call).
Napi::Value NamedArgs::get(const char* name) const {
  note_read();
  return obj_.Get(name);
}

Span<float> NamedArgs::f32_optional(const char* name) const {
  Napi::Value v = get(name);
  TypedArrayMemory mem;
  if (typed_array_info(env(), v, &mem) && mem.type == napi_float32_array) return given_array<float>(v, mem, name);
  if (v.IsNull() || v.IsUndefined()) return {};
  type_error(std::string("argument '") + name + "' must be a Float32Array, null or undefined, got " + type_name(v));
}

Span<int32_t> NamedArgs::i32_optional(const char* name) const {
  Napi::Value v = get(name);
  TypedArrayMemory mem;
  if (typed_array_info(env(), v, &mem) && mem.type == napi_int32_array) return given_array<int32_t>(v, mem, name);
  if (v.IsNull() || v.IsUndefined()) return {};
  type_error(std::string("argument '") + name + "' must be an Int32Array, null or undefined, got " + type_name(v));
}

Span<float> NamedArgs::f32_or_null(const char* name) const {
  Napi::Value v = get(name);
  TypedArrayMemory mem;
  if (typed_array_info(env(), v, &mem) && mem.type == napi_float32_array) return given_array<float>(v, mem, name);
  if (v.IsNull()) return {};
  type_error(std::string("argument '") + name + "' must be a Float32Array or null, got " + type_name(v));
}

int64_t NamedArgs::integer_or(const char* name, int64_t fallback, int64_t min, int64_t max) const {
  Napi::Value v = get(name);
  double d;
  if (napi_get_value_double(env(), v, &d) == napi_ok) return checked_integer(d, name, min, max);
  if (v.IsUndefined()) return fallback;
  return integer_value(v, name, min, max);  // throws the TypeError
}

double NamedArgs::number_or(const char* name, double fallback) const {
  Napi::Value v = get(name);
  double d;
  if (napi_get_value_double(env(), v, &d) == napi_ok) return d;
  if (v.IsUndefined()) return fallback;
  return number_value(v, name);  // throws the TypeError
}

bool NamedArgs::boolean_or(const char* name, bool fallback) const {
  Napi::Value v = get(name);
  bool b;
  if (napi_get_value_bool(env(), v, &b) == napi_ok) return b;
  if (v.IsUndefined()) return fallback;
  return boolean_value(v, name);  // throws the TypeError
}

void ArgsBase::use_array(const Napi::Value& v, const TypedArrayMemory& mem, const char* name) const {
  const UsedArray used{v, mem.data, mem.byte_length, name, reads_};
  if (used_count_ < std::size(used_)) {
    used_[used_count_++] = used;
  } else {
    used_more_.push_back(used);
  }
  if (keep_) keep_->push_back(KeptArray{Napi::Persistent(v), mem.data, mem.byte_length});
}

void ArgsBase::require_unchanged() const {
  auto check = [this](const UsedArray& u) {
    if (u.reads == reads_) return;  // no JS could run after its check
    TypedArrayMemory now;
    // The handle stays valid for the whole call; a typed array stays one.
    if (!typed_array_info(env(), u.value, &now) || now.data != u.data || now.byte_length < u.byte_length) {
      type_error(std::string("argument '") + u.name +
                 "' was detached or resized while the arguments were read (by a getter or a Proxy)");
    }
  };
  for (size_t i = 0; i < used_count_; ++i) check(used_[i]);
  for (const UsedArray& u : used_more_) check(u);
}

template <typename T>
Span<T> ArgsBase::given_array(const Napi::Value& v, const TypedArrayMemory& mem, const char* name) const {
  use_array(v, mem, name);
  return typed_span<T>(mem);
}

void ArgsBase::range_error(const std::string& message) const {
  throw Napi::RangeError::New(env(), std::string("attnode.") + fn_ + ": " + message);
}

void ArgsBase::type_error(const std::string& message) const {
  throw Napi::TypeError::New(env(), std::string("attnode.") + fn_ + ": " + message);
}

void ArgsBase::length_error(const char* name, int64_t actual, int64_t needed, const std::string& why) const {
  std::ostringstream m;
  m << "argument '" << name << "' has " << actual << " elements, expected at least " << needed << " (" << why << ")";
  range_error(m.str());
}

void ArgsBase::overlap_error(const char* out_name, const char* in_name, bool allow_exact) const {
  std::ostringstream m;
  m << "output '" << out_name << "' overlaps input '" << in_name << "'"
    << (allow_exact ? " (only exact in-place aliasing is allowed)" : " (in-place is not supported here)");
  range_error(m.str());
}

Span<float> ArgsBase::f32_value(const Napi::Value& v, const char* name) const {
  TypedArrayMemory mem;
  if (!typed_array_info(env(), v, &mem) || mem.type != napi_float32_array) {
    type_error(std::string("argument '") + name + "' must be a Float32Array, got " + type_name(v));
  }
  return given_array<float>(v, mem, name);
}

Span<int32_t> ArgsBase::i32_value(const Napi::Value& v, const char* name) const {
  TypedArrayMemory mem;
  if (!typed_array_info(env(), v, &mem) || mem.type != napi_int32_array) {
    type_error(std::string("argument '") + name + "' must be an Int32Array, got " + type_name(v));
  }
  return given_array<int32_t>(v, mem, name);
}

double ArgsBase::number_value(const Napi::Value& v, const char* name) const {
  double d;
  if (napi_get_value_double(env(), v, &d) != napi_ok) {
    type_error(std::string("argument '") + name + "' must be a number, got " + type_name(v));
  }
  return d;
}

int64_t ArgsBase::checked_integer(double d, const char* name, int64_t min, int64_t max) const {
  if (!std::isfinite(d) || d != std::floor(d) || d < static_cast<double>(min) || d > static_cast<double>(max)) {
    std::ostringstream m;
    m << "argument '" << name << "' must be an integer in [" << min << ", " << max << "], got " << js_number(d);
    range_error(m.str());
  }
  return static_cast<int64_t>(d);
}

int64_t ArgsBase::integer_value(const Napi::Value& v, const char* name, int64_t min, int64_t max) const {
  return checked_integer(number_value(v, name), name, min, max);
}

bool ArgsBase::boolean_value(const Napi::Value& v, const char* name) const {
  bool b;
  if (napi_get_value_bool(env(), v, &b) != napi_ok) {
    type_error(std::string("argument '") + name + "' must be a boolean, got " + type_name(v));
  }
  return b;
}

bool ArgsBase::bf16_value(const Napi::Value& v, const char* name) const {
  if (v.IsUndefined() || v.IsNull()) return false;
  if (!v.IsString())
    type_error(std::string("argument '") + name + "' must be 'float32' | 'bfloat16', got " + type_name(v));
  const std::string value = v.As<Napi::String>().Utf8Value();
  if (value == "float32") return false;
  if (value != "bfloat16")
    range_error(std::string("argument '") + name + "' must be 'float32' | 'bfloat16', got '" + value + "'");
  const runtime::CpuInfo& cpu = runtime::cpu_info();
  if (!(cpu.avx512bf16 && cpu.os_avx512)) {
    range_error(std::string(name) +
                " 'bfloat16' needs a CPU with AVX512-BF16 (avx512bf16), which this CPU lacks; use 'float32'");
  }
  return true;
}

std::vector<int64_t> ArgsBase::int_array_value(const Napi::Value& v, const char* name, size_t max_len, int64_t min,
                                               int64_t max) const {
  if (!v.IsArray())
    type_error(std::string("argument '") + name + "' must be an Array of integers, got " + type_name(v));
  Napi::Array a = v.As<Napi::Array>();
  if (a.Length() > max_len) {
    std::ostringstream m;
    m << "argument '" << name << "' has " << a.Length() << " entries, at most " << max_len << " are supported";
    range_error(m.str());
  }
  std::vector<int64_t> out(a.Length());
  for (uint32_t j = 0; j < a.Length(); ++j) {
    note_read();
    Napi::Value e = a.Get(j);
    double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : NAN;
    if (!std::isfinite(d) || d != std::floor(d) || d < static_cast<double>(min) || d > static_cast<double>(max)) {
      std::ostringstream m;
      m << "argument '" << name << "'[" << j << "] must be an integer in [" << min << ", " << max << "], got "
        << (e.IsNumber() ? js_number(d) : std::string(type_name(e)));
      range_error(m.str());
    }
    out[j] = static_cast<int64_t>(d);
  }
  return out;
}

int64_t checked_mul(const ArgsBase& args, int64_t a, int64_t b, const char* what) {
  int64_t r = 0;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r) || r > (int64_t{1} << 53)) {
    std::ostringstream m;
    m << what << " = " << a << " * " << b << " is out of range";
    args.range_error(m.str());
  }
  return r;
}

}  // namespace attnode::binding
