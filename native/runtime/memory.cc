#include "runtime/memory.h"

#include <cstdlib>
#include <cstring>
#include <mutex>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace attnode::runtime {

bool configure_process_allocator() {
  static std::once_flag once;
  static bool applied = false;
  std::call_once(once, [] {
    const char* env = std::getenv("ATTNODE_MALLOC_TUNING");
    if (env && std::strcmp(env, "0") == 0) return;
#if defined(__GLIBC__)
    // Blocks up to 256 MiB come from the heap (reused after free); the heap
    // top is trimmed back to the OS only past 1 GiB of free space.
    applied = mallopt(M_MMAP_THRESHOLD, 256 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1;
#endif
  });
  return applied;
}

}  // namespace attnode::runtime
