// How binding files expose ops.
//
// Each op is a Parser: it validates its JS arguments (through Args) and
// returns the kernel call as a closure, or an empty closure when there is
// nothing to compute. RegisterOp turns one Parser into two JS functions:
//   name(...)              validates and runs now, on the calling thread;
//   nameRecord(list, ...)  validates now and appends the call to a command
//                          list that submit(list) later runs on the executor
//                          thread (see command_list_binding.cc).
// So the checks are written once and hold for both.
#pragma once

#include <napi.h>

#include <functional>

#include "binding/args.h"

namespace attnode::binding {

// A validated kernel call. May throw std::exception (e.g. an input changed
// between recording and running); the error reaches JS either way.
using Kernel = std::function<void()>;
using Parser = Kernel (*)(Args& args);

// `optional` trailing arguments may be left out (they read as undefined).
void RegisterOp(Napi::Env env, Napi::Object exports, const char* name, size_t argc, Parser parse, size_t optional = 0);

void RegisterRuntime(Napi::Env env, Napi::Object exports);
void RegisterGemm(Napi::Env env, Napi::Object exports);
void RegisterLayerOps(Napi::Env env, Napi::Object exports);
void RegisterAttention(Napi::Env env, Napi::Object exports);
void RegisterCommandLists(Napi::Env env, Napi::Object exports);

}  // namespace attnode::binding
