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

AllocatorStats allocator_stats() {
  AllocatorStats s;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  const struct mallinfo2 mi = mallinfo2();
  s.arena_bytes = mi.arena;
  s.in_use_bytes = mi.uordblks;
  s.free_bytes = mi.fordblks;
  s.mmap_bytes = mi.hblkhd;
#endif
  return s;
}

bool trim_allocator() {
#if defined(__GLIBC__)
  return malloc_trim(0) == 1;
#else
  return false;
#endif
}

}  // namespace attnode::runtime
