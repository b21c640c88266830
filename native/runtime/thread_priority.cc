#include "thread_priority.h"

#include <cstdlib>

#if defined(__linux__)
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace attnode::runtime {

void lower_background_thread_priority() {
#if defined(__linux__)
  int inc = 5;
  if (const char* env = std::getenv("ATTNODE_WORKER_NICE")) inc = std::atoi(env);
  if (inc <= 0) return;
  if (inc > 19) inc = 19;
  // On Linux, PRIO_PROCESS with a thread id changes only that thread.
  const auto tid = static_cast<id_t>(syscall(SYS_gettid));
  const int current = getpriority(PRIO_PROCESS, tid);
  setpriority(PRIO_PROCESS, tid, current + inc > 19 ? 19 : current + inc);
#endif
}

}  // namespace attnode::runtime
