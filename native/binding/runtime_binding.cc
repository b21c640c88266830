// info(), setNumThreads(n), getNumThreads(), setIsa(name): the runtime's
// controls and what it detected.
#include "binding/args.h"
#include "binding/bindings.h"
#include "kernels/gemm/gemm.h"
#include "kernels/qgemm/qgemm.h"
#include "runtime/cpu_features.h"
#include "runtime/huge_pages.h"
#include "runtime/memory.h"
#include "runtime/thread_pool.h"

#include <string>

namespace attnode::binding {
namespace {

using runtime::Isa;

Napi::Value Info(const Napi::CallbackInfo& info) {
  Args args(info, "info", 0);
  Napi::Env env = info.Env();
  const runtime::CpuInfo& cpu = runtime::cpu_info();
  Napi::Object out = Napi::Object::New(env);
  out.Set("isa", runtime::isa_name(runtime::active_isa()));
  out.Set("detectedIsa", runtime::isa_name(runtime::detected_isa()));
  if (!runtime::env_isa_request().empty() || runtime::env_isa_invalid()) {
    out.Set("envIsa", runtime::env_isa_request());
  }
  out.Set("envIsaInvalid", runtime::env_isa_invalid());
  // Whether packWeight(..., 'bfloat16') works now (CPU has AVX512-BF16 and
  // the active path is avx512): follows setIsa.
  out.Set("bf16", kernels::bf16_gemm_available());
  out.Set("int8", kernels::qgemm_path_name(kernels::qgemm_path()));
  out.Set("numThreads", runtime::ThreadPool::instance().num_threads());
  out.Set("allocatorTuned", runtime::configure_process_allocator());
  // Packed weights on transparent huge pages (runtime/huge_pages.h): the kernel's THP mode and whether
  // new weights are advised as huge pages (ATTNODE_HUGE_PAGES=0 turns it off).
  Napi::Object hp = Napi::Object::New(env);
  hp.Set("mode", runtime::transparent_huge_pages_mode());
  hp.Set("enabled", runtime::huge_pages_enabled());
  out.Set("hugePages", hp);

  Napi::Object c = Napi::Object::New(env);
  c.Set("vendor", cpu.vendor);
  c.Set("brand", cpu.brand);
  Napi::Array features = Napi::Array::New(env);
  uint32_t nf = 0;
  auto add = [&](bool has, const char* name) {
    if (has) features.Set(nf++, name);
  };
  add(cpu.sse42, "sse4.2");
  add(cpu.avx && cpu.os_avx, "avx");
  add(cpu.avx2 && cpu.os_avx, "avx2");
  add(cpu.fma && cpu.os_avx, "fma");
  add(cpu.f16c && cpu.os_avx, "f16c");
  add(cpu.avx512f && cpu.os_avx512, "avx512f");
  add(cpu.avx512bw && cpu.os_avx512, "avx512bw");
  add(cpu.avx512vl && cpu.os_avx512, "avx512vl");
  add(cpu.avx512dq && cpu.os_avx512, "avx512dq");
  add(cpu.avx512bf16 && cpu.os_avx512, "avx512bf16");
  add(cpu.avx512vnni && cpu.os_avx512, "avx512vnni");
  c.Set("features", features);
  c.Set("l1dBytes", Napi::Number::New(env, static_cast<double>(cpu.l1d_bytes)));
  c.Set("l2Bytes", Napi::Number::New(env, static_cast<double>(cpu.l2_bytes)));
  c.Set("l3Bytes", Napi::Number::New(env, static_cast<double>(cpu.l3_bytes)));
  c.Set("family", cpu.family);
  c.Set("model", cpu.model);
  c.Set("stepping", cpu.stepping);
  c.Set("uarch", cpu.uarch);
  out.Set("cpu", c);

  // The fp32 GEMM's choice for this CPU and the active path (follows setIsa).
  const kernels::GemmTuning tu = kernels::gemm_tuning();
  Napi::Object g = Napi::Object::New(env);
  g.Set("entry", tu.entry);
  g.Set("mr", tu.mr);
  g.Set("nr", tu.nr);
  g.Set("kc", Napi::Number::New(env, static_cast<double>(tu.kc)));
  g.Set("nc", Napi::Number::New(env, static_cast<double>(tu.nc)));
  g.Set("ncStream", Napi::Number::New(env, static_cast<double>(tu.nc_stream)));
  g.Set("directA", tu.direct_a);
  g.Set("directB", tu.direct_b);
  out.Set("gemm", g);

  Napi::Object build = Napi::Object::New(env);
#if defined(__clang__)
  build.Set("compiler", std::string("clang ") + __clang_version__);
#elif defined(__GNUC__)
  build.Set("compiler", std::string("gcc ") + __VERSION__);
#else
  build.Set("compiler", "unknown");
#endif
  build.Set("napiVersion", NAPI_VERSION);
  build.Set("kernels",
            "portable, avx2+fma, avx512 (selected at run time); avx512bf16 GEMM for bf16-packed weights and bf16 "
            "attention; int8 weights on avx512vnni, avx2, portable");
#ifdef NDEBUG
  build.Set("debug", false);
#else
  build.Set("debug", true);
#endif
#if defined(__SANITIZE_ADDRESS__)
  build.Set("asan", true);
#else
  build.Set("asan", false);
#endif
  out.Set("build", build);
  return out;
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  Args args(info, "setNumThreads", 1);
  const int64_t n = args.integer(0, "n", 1, runtime::ThreadPool::kMaxThreads);
  runtime::ThreadPool::instance().set_num_threads(static_cast<int>(n));
  return info.Env().Undefined();
}

Napi::Value GetNumThreads(const Napi::CallbackInfo& info) {
  Args args(info, "getNumThreads", 0);
  return Napi::Number::New(info.Env(), runtime::ThreadPool::instance().num_threads());
}

Napi::Value SetIsa(const Napi::CallbackInfo& info) {
  Args args(info, "setIsa", 1);
  Napi::Value v = info[0];
  if (!v.IsString()) args.type_error("argument 'isa' must be one of 'avx512' | 'avx2' | 'portable'");
  const std::string name = v.As<Napi::String>().Utf8Value();
  Isa isa;
  if (!runtime::parse_isa(name, &isa)) {
    args.range_error("argument 'isa' must be one of 'avx512' | 'avx2' | 'portable', got '" + name + "'");
  }
  if (!runtime::set_isa(isa)) {
    args.range_error(std::string("this CPU cannot run the '") + name + "' kernels (best available: '" +
                     runtime::isa_name(runtime::detected_isa()) + "')");
  }
  return Napi::String::New(info.Env(), runtime::isa_name(runtime::active_isa()));
}

// memoryStats(): the C allocator's byte counts (runtime::allocator_stats) and the packed weights' huge-page
// slabs (runtime::streamed_memory_stats).
Napi::Value MemoryStats(const Napi::CallbackInfo& info) {
  Args args(info, "memoryStats", 0);
  const runtime::AllocatorStats s = runtime::allocator_stats();
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("arenaBytes", static_cast<double>(s.arena_bytes));
  out.Set("inUseBytes", static_cast<double>(s.in_use_bytes));
  out.Set("freeBytes", static_cast<double>(s.free_bytes));
  out.Set("mmapBytes", static_cast<double>(s.mmap_bytes));
  const runtime::StreamedMemoryStats w = runtime::streamed_memory_stats();
  out.Set("weightSlabs", static_cast<double>(w.slabs));
  out.Set("weightMappedBytes", static_cast<double>(w.mapped_bytes));
  out.Set("weightBytes", static_cast<double>(w.live_bytes));
  return out;
}

// trimAllocator(): free allocator memory back to the OS (runtime::trim_allocator).
Napi::Value TrimAllocator(const Napi::CallbackInfo& info) {
  Args args(info, "trimAllocator", 0);
  return Napi::Boolean::New(info.Env(), runtime::trim_allocator());
}

}  // namespace

void RegisterRuntime(Napi::Env env, Napi::Object exports) {
  exports.Set("info", Napi::Function::New(env, Info, "info"));
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads, "setNumThreads"));
  exports.Set("getNumThreads", Napi::Function::New(env, GetNumThreads, "getNumThreads"));
  exports.Set("setIsa", Napi::Function::New(env, SetIsa, "setIsa"));
  exports.Set("memoryStats", Napi::Function::New(env, MemoryStats, "memoryStats"));
  exports.Set("trimAllocator", Napi::Function::New(env, TrimAllocator, "trimAllocator"));
}

}  // namespace attnode::binding
