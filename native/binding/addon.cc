// Addon entry point. Node-API modules are context-aware, so the addon can be
// loaded by several worker_threads at once; per-process state (thread pool,
// CPU info) lives in native/runtime and is shared by all of them.
#include <napi.h>

#include "binding/bindings.h"
#include "runtime/memory.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  attnode::runtime::configure_process_allocator();
  attnode::binding::RegisterRuntime(env, exports);
  attnode::binding::RegisterOps(env, exports);
  attnode::binding::RegisterPackedWeights(env, exports);
  attnode::binding::RegisterCommandLists(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(attnode, Init)
