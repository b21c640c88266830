// The kernel tests' failure counter and CHECK(cond, printf-args...): a failed
// check is counted and (for the first 30) printed with its file, line and
// condition; the test's main returns non-zero when g_failures > 0.
// Each test is its own program, so the counter lives in this one TU.
#pragma once

#include <cstdio>

namespace {

int g_failures = 0;

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
