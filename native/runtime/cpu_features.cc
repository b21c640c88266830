#include "cpu_features.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define ATTNODE_X86 1
#else
#define ATTNODE_X86 0
#endif

namespace attnode::runtime {
namespace {

#if ATTNODE_X86
struct Regs {
  unsigned a = 0, b = 0, c = 0, d = 0;
};

Regs cpuid(unsigned leaf, unsigned sub = 0) {
  Regs r;
  __cpuid_count(leaf, sub, r.a, r.b, r.c, r.d);
  return r;
}

// xgetbv via inline asm: the _xgetbv intrinsic needs -mxsave on the whole TU,
// and this file must stay baseline-compiled.
uint64_t xgetbv0() {
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

// Deterministic cache parameters (Intel leaf 4, AMD leaf 0x8000001D share the layout).
void read_cache_leaf(unsigned leaf, CpuInfo* ci) {
  for (unsigned i = 0; i < 16; ++i) {
    Regs r = cpuid(leaf, i);
    unsigned type = r.a & 0x1f;
    if (type == 0) break;
    if (type == 2) continue;  // instruction cache
    unsigned level = (r.a >> 5) & 0x7;
    int64_t ways = ((r.b >> 22) & 0x3ff) + 1;
    int64_t parts = ((r.b >> 12) & 0x3ff) + 1;
    int64_t line = (r.b & 0xfff) + 1;
    int64_t sets = static_cast<int64_t>(r.c) + 1;
    int64_t bytes = ways * parts * line * sets;
    if (level == 1 && ci->l1d_bytes == 0) ci->l1d_bytes = bytes;
    if (level == 2 && ci->l2_bytes == 0) ci->l2_bytes = bytes;
    if (level == 3 && ci->l3_bytes == 0) ci->l3_bytes = bytes;
  }
}
#endif

// AMD's family/model ranges (family 19h splits by model between Zen 3 and
// Zen 4: 00-0F Milan, 10-1F Genoa, 20-2F Vermeer, 40-4F Rembrandt, 50-5F
// Cezanne, 60-7F Raphael/Phoenix, A0-AF Bergamo/Siena; 1Ah is Zen 5).
std::string amd_uarch(const std::string& vendor, int family, int model) {
  if (vendor != "AuthenticAMD") return "";
  if (family == 0x1a) return "zen5";
  if (family != 0x19) return "";
  if ((model >= 0x10 && model <= 0x1f) || (model >= 0x60 && model <= 0x7f) || (model >= 0xa0 && model <= 0xaf))
    return "zen4";
  return "zen3";
}

CpuInfo detect() {
  CpuInfo ci;
#if ATTNODE_X86
  Regs r0 = cpuid(0);
  unsigned max_leaf = r0.a;
  char vendor[13] = {};
  std::memcpy(vendor + 0, &r0.b, 4);
  std::memcpy(vendor + 4, &r0.d, 4);
  std::memcpy(vendor + 8, &r0.c, 4);
  ci.vendor = vendor;
  unsigned max_ext = cpuid(0x80000000).a;
  if (max_ext >= 0x80000004) {
    char brand[49] = {};
    for (unsigned i = 0; i < 3; ++i) {
      Regs r = cpuid(0x80000002 + i);
      std::memcpy(brand + 16 * i + 0, &r.a, 4);
      std::memcpy(brand + 16 * i + 4, &r.b, 4);
      std::memcpy(brand + 16 * i + 8, &r.c, 4);
      std::memcpy(brand + 16 * i + 12, &r.d, 4);
    }
    std::string b = brand;
    size_t s = b.find_first_not_of(' ');
    size_t e = b.find_last_not_of(' ');
    ci.brand = s == std::string::npos ? "" : b.substr(s, e - s + 1);
  }
  if (max_leaf >= 1) {
    Regs r1 = cpuid(1);
    const int base_family = (r1.a >> 8) & 0xf, base_model = (r1.a >> 4) & 0xf;
    ci.family = base_family == 0xf ? base_family + static_cast<int>((r1.a >> 20) & 0xff) : base_family;
    ci.model = base_family == 0xf || base_family == 0x6 ? base_model | static_cast<int>(((r1.a >> 16) & 0xf) << 4)
                                                        : base_model;
    ci.stepping = r1.a & 0xf;
    ci.sse42 = (r1.c >> 20) & 1;
    ci.fma = (r1.c >> 12) & 1;
    ci.avx = (r1.c >> 28) & 1;
    ci.f16c = (r1.c >> 29) & 1;
    bool osxsave = (r1.c >> 27) & 1;
    if (osxsave) {
      uint64_t xcr0 = xgetbv0();
      ci.os_avx = (xcr0 & 0x6) == 0x6;
      ci.os_avx512 = ci.os_avx && (xcr0 & 0xe0) == 0xe0;
    }
  }
  if (max_leaf >= 7) {
    Regs r7 = cpuid(7, 0);
    ci.avx2 = (r7.b >> 5) & 1;
    ci.avx512f = (r7.b >> 16) & 1;
    ci.avx512dq = (r7.b >> 17) & 1;
    ci.avx512bw = (r7.b >> 30) & 1;
    ci.avx512vl = (r7.b >> 31) & 1;
    ci.avx512vnni = (r7.c >> 11) & 1;
    if (r7.a >= 1) ci.avx512bf16 = (cpuid(7, 1).a >> 5) & 1;
  }
  bool amd = ci.vendor == "AuthenticAMD" || ci.vendor == "HygonGenuine";
  if (amd && max_ext >= 0x8000001D && ((cpuid(0x80000001).c >> 22) & 1)) read_cache_leaf(0x8000001D, &ci);
  if (!amd && max_leaf >= 4) read_cache_leaf(4, &ci);
  // Older AMD parts: legacy L1/L2/L3 descriptors.
  if (amd && ci.l1d_bytes == 0 && max_ext >= 0x80000005)
    ci.l1d_bytes = int64_t((cpuid(0x80000005).c >> 24) & 0xff) << 10;
  if (amd && ci.l2_bytes == 0 && max_ext >= 0x80000006) {
    Regs r = cpuid(0x80000006);
    ci.l2_bytes = int64_t((r.c >> 16) & 0xffff) << 10;
    ci.l3_bytes = int64_t((r.d >> 18) & 0x3fff) << 19;
  }
  ci.uarch = amd_uarch(ci.vendor, ci.family, ci.model);
#endif
  // Sane values when cpuid reports nothing (hypervisors sometimes hide leaves);
  // the GEMM blocking derives from these, so zero is never useful to kernels.
  if (ci.l1d_bytes < 8 * 1024 || ci.l1d_bytes > 1024 * 1024) ci.l1d_bytes = 32 * 1024;
  if (ci.l2_bytes < 64 * 1024 || ci.l2_bytes > 64 * 1024 * 1024) ci.l2_bytes = 512 * 1024;
  if (ci.l3_bytes < 0) ci.l3_bytes = 0;
  return ci;
}

Isa compute_detected(const CpuInfo& ci) {
  if (ci.avx512f && ci.avx512bw && ci.avx512vl && ci.avx512dq && ci.fma && ci.os_avx512) return Isa::Avx512;
  if (ci.avx2 && ci.fma && ci.os_avx) return Isa::Avx2;
  return Isa::Portable;
}

struct EnvIsa {
  std::string request;
  bool invalid = false;
  Isa cap = Isa::Avx512;
};

const EnvIsa& env_isa() {
  static const EnvIsa e = [] {
    EnvIsa r;
    const char* v = std::getenv("ATTNODE_ISA");
    if (v != nullptr && *v != '\0') {
      Isa isa;
      if (parse_isa(v, &isa)) {
        r.request = v;
        r.cap = isa;
      } else {
        r.invalid = true;
      }
    }
    return r;
  }();
  return e;
}

Isa min_isa(Isa a, Isa b) { return static_cast<int>(a) < static_cast<int>(b) ? a : b; }

// -1 = not yet initialised; relaxed is enough since set_isa is not meant to race kernels.
std::atomic<int> g_active{-1};

}  // namespace

const CpuInfo& cpu_info() {
  static const CpuInfo ci = detect();
  return ci;
}

Isa detected_isa() {
  static const Isa d = compute_detected(cpu_info());
  return d;
}

Isa active_isa() {
  int v = g_active.load(std::memory_order_relaxed);
  if (v >= 0) return static_cast<Isa>(v);
  Isa a = min_isa(detected_isa(), env_isa().cap);
  int expected = -1;
  g_active.compare_exchange_strong(expected, static_cast<int>(a), std::memory_order_relaxed);
  return static_cast<Isa>(g_active.load(std::memory_order_relaxed));
}

bool set_isa(Isa isa) {
  if (static_cast<int>(isa) < 0 || static_cast<int>(isa) > static_cast<int>(detected_isa())) return false;
  // The env var is a hard cap set by the user: set_isa can lower, not raise past it.
  g_active.store(static_cast<int>(min_isa(isa, env_isa().cap)), std::memory_order_relaxed);
  return true;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Portable:
      return "portable";
    case Isa::Avx2:
      return "avx2";
    case Isa::Avx512:
      return "avx512";
  }
  return "unknown";
}

bool parse_isa(const std::string& name, Isa* out) {
  Isa v;
  if (name == "portable") {
    v = Isa::Portable;
  } else if (name == "avx2") {
    v = Isa::Avx2;
  } else if (name == "avx512") {
    v = Isa::Avx512;
  } else {
    return false;
  }
  if (out != nullptr) *out = v;
  return true;
}

const std::string& env_isa_request() { return env_isa().request; }
bool env_isa_invalid() { return env_isa().invalid; }

}  // namespace attnode::runtime
