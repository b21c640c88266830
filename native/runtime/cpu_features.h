// CPU feature detection and the choice of kernel path (ISA) made at run time.
//
// One shipped binary runs on any x86-64: every kernel family has a portable
// implementation compiled for the baseline ISA, plus AVX2+FMA and AVX-512
// variants compiled in their own translation units (see native/kernels/*_avx2.cc,
// *_avx512.cc). The active path is the best one the CPU *and the OS* (XSAVE
// state enabled for YMM/ZMM) support, capped by the ATTNODE_ISA environment
// variable read once at load time, or by set_isa() at run time.
#pragma once

#include <cstdint>
#include <string>

namespace attnode::runtime {

// Ordered: a higher value is a superset of the lower ones.
enum class Isa : int { Portable = 0, Avx2 = 1, Avx512 = 2 };

struct CpuInfo {
  std::string vendor;
  std::string brand;
  // cpuid leaf 1 signature with the extended fields folded in (family 25 =
  // AMD Zen 3/4, 26 = Zen 5; Intel family 6); 0 when unknown.
  int family = 0;
  int model = 0;
  int stepping = 0;
  // Microarchitecture named from vendor/family/model where it is known:
  // "zen3" | "zen4" | "zen5", else "" (tuning tables fall back to rules
  // derived from the cache sizes).
  std::string uarch;
  bool sse42 = false;
  bool avx = false;
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512dq = false;
  bool avx512bf16 = false;
  bool avx512vnni = false;
  bool os_avx = false;     // OS saves YMM state (XCR0 bits 1,2)
  bool os_avx512 = false;  // OS saves ZMM/opmask state (XCR0 bits 5,6,7)
  // Data cache sizes in bytes, per core for L1/L2 and total for L3; 0 when unknown.
  int64_t l1d_bytes = 0;
  int64_t l2_bytes = 0;
  int64_t l3_bytes = 0;
};

// Detected once (thread-safe static init) and never changes.
const CpuInfo& cpu_info();

// Best ISA this machine can run.
Isa detected_isa();

// ISA the kernels use now: min(detected, ATTNODE_ISA, last set_isa()).
Isa active_isa();

// Caps the active ISA. Returns false (and changes nothing) if the CPU cannot
// run `isa`. Not meant to be flipped while kernels run on other threads.
bool set_isa(Isa isa);

// "portable" | "avx2" | "avx512".
const char* isa_name(Isa isa);

// Parses the names above; returns false for anything else.
bool parse_isa(const std::string& name, Isa* out);

// Value of ATTNODE_ISA at load time if it was set and valid, else "".
// An invalid value is reported here (invalid_env_isa) instead of being
// silently ignored, so info() can show it.
const std::string& env_isa_request();
bool env_isa_invalid();

}  // namespace attnode::runtime
