// Each binding file registers its functions on the addon's exports.
#pragma once

#include <napi.h>

namespace attnode::binding {

void RegisterRuntime(Napi::Env env, Napi::Object exports);
void RegisterGemm(Napi::Env env, Napi::Object exports);
void RegisterLayerOps(Napi::Env env, Napi::Object exports);
void RegisterAttention(Napi::Env env, Napi::Object exports);

}  // namespace attnode::binding
