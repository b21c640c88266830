// How binding files expose ops.
//
// Each op is a Parser: it validates its one argument object (through
// NamedArgs) and returns the kernel call as a closure, or an empty closure
// when there is nothing to compute. op_registry.cc lists every parser once
// and turns each into two JS functions:
//   name(args)              validates and runs now, on the calling thread;
//   nameRecord(list, args)  validates now and appends the call to a command
//                           list that submit(list) later runs on the executor
//                           thread (see command_list_binding.cc).
// So the checks are written once and hold for both. Adding an op is a parser
// in its family's *_binding.cc plus one line in op_registry.cc.
#pragma once

#include <napi.h>

#include <functional>

#include "binding/args.h"

namespace attnode::binding {

// A validated kernel call. May throw std::exception (e.g. an input changed
// between recording and running); the error reaches JS either way.
using Kernel = std::function<void()>;
using Parser = Kernel (*)(NamedArgs& args);

// The parsers (one per op; see each family's *_binding.cc for its fields).
Kernel ParseGemm(NamedArgs& args);
Kernel ParseGemmGroup(NamedArgs& args);
Kernel ParseSoftmax(NamedArgs& args);
Kernel ParseLayerNorm(NamedArgs& args);
Kernel ParseAddLayerNorm(NamedArgs& args);
Kernel ParseRmsNorm(NamedArgs& args);
Kernel ParseAddRmsNorm(NamedArgs& args);
Kernel ParseRelu(NamedArgs& args);
Kernel ParseGelu(NamedArgs& args);
Kernel ParseUnary(NamedArgs& args);
Kernel ParseSiluMul(NamedArgs& args);
Kernel ParseBinary(NamedArgs& args);
Kernel ParseEmbedding(NamedArgs& args);
Kernel ParseIndexCopy(NamedArgs& args);
Kernel ParseCopy(NamedArgs& args);
Kernel ParsePermute0213(NamedArgs& args);
Kernel ParseAttention(NamedArgs& args);
Kernel ParseAttentionBackward(NamedArgs& args);
Kernel ParseRope(NamedArgs& args);
Kernel ParseSoftmaxBackward(NamedArgs& args);
Kernel ParseLayerNormBackward(NamedArgs& args);
Kernel ParseRmsNormBackward(NamedArgs& args);
Kernel ParseActivationBackward(NamedArgs& args);
Kernel ParseDropoutMask(NamedArgs& args);
Kernel ParseEmbeddingBackward(NamedArgs& args);
Kernel ParseCrossEntropy(NamedArgs& args);
Kernel ParseCrossEntropyBackward(NamedArgs& args);
Kernel ParseSgdStep(NamedArgs& args);
Kernel ParseAdamStep(NamedArgs& args);
Kernel ParseClipGradNorm(NamedArgs& args);

// Command lists (command_list_binding.cc): what the record form of an op needs.
struct CommandList;
// The list passed as info[0] to `fn`; a TypeError if it is not one, an Error
// if it was already submitted.
CommandList* RecordingTarget(const Napi::CallbackInfo& info, const char* fn);
// Appends a validated call and the arrays it touches.
void AppendToList(CommandList* list, Kernel kernel, KeepAlive&& refs);

void RegisterOps(Napi::Env env, Napi::Object exports);
void RegisterRuntime(Napi::Env env, Napi::Object exports);
void RegisterPackedWeights(Napi::Env env, Napi::Object exports);
void RegisterCommandLists(Napi::Env env, Napi::Object exports);

}  // namespace attnode::binding
