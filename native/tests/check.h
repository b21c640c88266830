// What the kernel tests share: the failure counter and CHECK(cond,
// printf-args...) (a failed check is counted and, for the first 30, printed
// with its file, line and condition), the per-(op, ISA) max-error table,
// thread-count and bit-equality helpers, and the loop that runs a test body
// on every kernel path this CPU supports. Each test is its own program, so
// the state lives in that one translation unit.
#pragma once

#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "../runtime/cpu_features.h"
#include "../runtime/thread_pool.h"

namespace {

int g_failures = 0;

// Max error per (op, isa) for the summary table.
std::map<std::string, std::map<std::string, double>> g_err;

inline void note(const std::string& op, const std::string& isa, double e) {
  double& v = g_err[op][isa];
  if (e > v) v = e;
}

// The g_err table, one column per kernel path in `ran`, then `legend`.
inline void print_error_table(const std::vector<std::string>& ran, int op_width, const char* legend) {
  std::printf("\n%-*s", op_width, "max error");
  for (auto& n : ran) std::printf("%12s", n.c_str());
  std::printf("\n");
  for (auto& [op, per] : g_err) {
    std::printf("%-*s", op_width, op.c_str());
    for (auto& n : ran) std::printf("%12.3g", per.count(n) ? per.at(n) : 0.0);
    std::printf("\n");
  }
  std::printf("%s\n", legend);
}

inline void set_threads(int n) { attnode::runtime::ThreadPool::instance().set_num_threads(n); }

inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Runs body(name, isa) on every kernel path the CPU (and ATTNODE_ISA) allows, printing "ok" or "FAILED" per path,
// then returns to the detected path. Returns the names of the paths that ran.
template <typename Body>
std::vector<std::string> for_each_isa(const Body& body) {
  namespace rt = attnode::runtime;
  std::printf("detected isa: %s\n", rt::isa_name(rt::detected_isa()));
  std::vector<std::string> ran;
  for (rt::Isa isa : {rt::Isa::Portable, rt::Isa::Avx2, rt::Isa::Avx512}) {
    if (!rt::set_isa(isa) || rt::active_isa() != isa) {
      std::printf("skipping %s (not supported here, or capped by ATTNODE_ISA)\n", rt::isa_name(isa));
      continue;
    }
    const std::string name = rt::isa_name(isa);
    ran.push_back(name);
    const int before = g_failures;
    body(name, isa);
    std::printf("%-9s %s\n", name.c_str(), g_failures == before ? "ok" : "FAILED");
  }
  rt::set_isa(rt::detected_isa());
  return ran;
}

// Prints the verdict line and gives main's exit code.
inline int finish() {
  std::printf("\n%s (%d failures)\n", g_failures ? "FAILED" : "ALL PASSED", g_failures);
  return g_failures ? 1 : 0;
}

}  // namespace

#define CHECK(cond, ...)                                            \
  do {                                                              \
    if (!(cond)) {                                                  \
      ++g_failures;                                                 \
      if (g_failures < 30) {                                        \
        std::printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
        std::printf(__VA_ARGS__);                                   \
        std::printf("\n");                                          \
      }                                                             \
    }                                                               \
  } while (0)
