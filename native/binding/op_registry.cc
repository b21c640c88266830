// The op table: every op the addon exports, by the name lib/backend/backend.ts
// gives it in OpArgs, with the parser that checks its argument object. From
// each entry come `name(args)` (validate, run now) and
// `nameRecord(list, args)` (validate now, run at submit).
#include <string>

#include "binding/args.h"
#include "binding/bindings.h"

namespace attnode::binding {
namespace {

struct OpEntry {
  const char* name;
  const char* record_name;
  Parser parse;
};

#define ATTNODE_OP(name, parser) \
  OpEntry { name, name "Record", parser }

const OpEntry kOps[] = {
    ATTNODE_OP("gemm", ParseGemm),
    ATTNODE_OP("gemmGroup", ParseGemmGroup),
    ATTNODE_OP("softmax", ParseSoftmax),
    ATTNODE_OP("layerNorm", ParseLayerNorm),
    ATTNODE_OP("addLayerNorm", ParseAddLayerNorm),
    ATTNODE_OP("rmsNorm", ParseRmsNorm),
    ATTNODE_OP("addRmsNorm", ParseAddRmsNorm),
    ATTNODE_OP("relu", ParseRelu),
    ATTNODE_OP("gelu", ParseGelu),
    ATTNODE_OP("unary", ParseUnary),
    ATTNODE_OP("siluMul", ParseSiluMul),
    ATTNODE_OP("binary", ParseBinary),
    ATTNODE_OP("embedding", ParseEmbedding),
    ATTNODE_OP("indexCopy", ParseIndexCopy),
    ATTNODE_OP("copy", ParseCopy),
    ATTNODE_OP("permute0213", ParsePermute0213),
    ATTNODE_OP("attention", ParseAttention),
    ATTNODE_OP("attentionBackward", ParseAttentionBackward),
    ATTNODE_OP("rope", ParseRope),
    ATTNODE_OP("softmaxBackward", ParseSoftmaxBackward),
    ATTNODE_OP("layerNormBackward", ParseLayerNormBackward),
    ATTNODE_OP("rmsNormBackward", ParseRmsNormBackward),
    ATTNODE_OP("activationBackward", ParseActivationBackward),
    ATTNODE_OP("dropoutMask", ParseDropoutMask),
    ATTNODE_OP("embeddingBackward", ParseEmbeddingBackward),
    ATTNODE_OP("crossEntropy", ParseCrossEntropy),
    ATTNODE_OP("crossEntropyBackward", ParseCrossEntropyBackward),
    ATTNODE_OP("sgdStep", ParseSgdStep),
    ATTNODE_OP("adamStep", ParseAdamStep),
    ATTNODE_OP("clipGradNorm", ParseClipGradNorm),
};

#undef ATTNODE_OP

// The entry rides along as the function's data: no allocation or string
// building per call.
Napi::Value CallNow(const Napi::CallbackInfo& info) {
  const OpEntry& op = *static_cast<const OpEntry*>(info.Data());
  NamedArgs args(info, op.name, 0, nullptr);
  Kernel k = op.parse(args);
  args.require_unchanged();
  if (k) {
    try {
      k();
    } catch (const std::exception& e) {
      throw Napi::Error::New(info.Env(), std::string("attnode.") + op.name + ": " + e.what());
    }
  }
  return info.Env().Undefined();
}

Napi::Value Record(const Napi::CallbackInfo& info) {
  const OpEntry& op = *static_cast<const OpEntry*>(info.Data());
  CommandList* list = RecordingTarget(info, op.record_name);
  KeepAlive refs;
  NamedArgs args(info, op.name, 1, &refs);
  Kernel k = op.parse(args);
  args.require_unchanged();
  // A getter may have submitted the list meanwhile: checked again, so a call
  // is never appended to a list that will not run it.
  RecordingTarget(info, op.record_name);
  // Only a call that validated is recorded, with the buffers it touches.
  AppendToList(list, std::move(k), std::move(refs));
  return info.Env().Undefined();
}

}  // namespace

void RegisterOps(Napi::Env env, Napi::Object exports) {
  for (const OpEntry& op : kOps) {
    void* data = const_cast<OpEntry*>(&op);
    exports.Set(op.name, Napi::Function::New<CallNow>(env, op.name, data));
    exports.Set(op.record_name, Napi::Function::New<Record>(env, op.record_name, data));
  }
}

}  // namespace attnode::binding
