// Command lists: the async form of every op.
//
//   const list = createCommandList();
//   gemmRecord(list, { ... }); softmaxRecord(list, { ... });   // validated now
//   await submit(list);                                         // run on the executor thread
//   await submit(list, { concurrent: true });  // independent of other lists: may run beside them, on one thread
//   cancel(list);                                               // skip it if not yet started
//   runList(list);                     // or: run it now on this thread, and again later (a replayed program)
//   runListRecord(other, list, targets, values);   // or: replay it as one call of another list being recorded
//
// Recording keeps a reference to every typed array the calls touch, so the
// buffers stay alive until the list has run; the references are dropped on
// the JS thread when the promise settles. The ops' record forms are made in
// op_registry.cc from the same parsers as their immediate forms.
#include <algorithm>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "binding/args.h"
#include "binding/bindings.h"
#include "runtime/executor.h"

namespace attnode::binding {

struct CommandList {
  std::vector<Kernel> kernels;
  KeepAlive refs;
  std::weak_ptr<runtime::Job> job;
  bool submitted = false;
  // Run (synchronously, any number of times) by runList, or replayed inside other lists (runListRecord): such
  // a list is never submitted and takes no more calls. Its calls then live here, shared with every list that
  // replays it (which may run after this list is garbage-collected).
  bool replayed = false;
  std::shared_ptr<const std::vector<Kernel>> frozen;
  // Whether `refs` holds one entry per distinct memory (runList's check walks them every run).
  bool compact = false;
};

namespace {

// Distinguishes our externals from any other (napi_type_tag): native code never trusts JS.
constexpr napi_type_tag kCommandListTag = {0x6174746e6f64652eULL, 0x636d646c69737431ULL};

CommandList* UnwrapList(const Napi::CallbackInfo& info, const char* fn) {
  Napi::Value v = info.Length() > 0 ? info[0] : info.Env().Undefined();
  if (!v.IsExternal() || !v.As<Napi::Object>().CheckTypeTag(&kCommandListTag)) {
    throw Napi::TypeError::New(
        info.Env(), std::string("attnode.") + fn + ": argument 'list' must be a command list from createCommandList()");
  }
  return v.As<Napi::External<CommandList>>().Data();
}

Napi::Value CreateCommandList(const Napi::CallbackInfo& info) {
  Args args(info, "createCommandList", 0);
  auto list =
      Napi::External<CommandList>::New(info.Env(), new CommandList(), [](Napi::Env, CommandList* l) { delete l; });
  list.TypeTag(&kCommandListTag);
  return list;
}

struct Completion {
  bool ran = true;
  std::string error;
};

struct Pending {
  Napi::Promise::Deferred deferred;
  KeepAlive refs;
  explicit Pending(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
};

void Settle(Napi::Env env, Napi::Function, Pending* pending, Completion* c) {
  if (env != nullptr) {
    if (!c->error.empty()) {
      pending->deferred.Reject(Napi::Error::New(env, "attnode: " + c->error).Value());
    } else if (!c->ran) {
      Napi::Error e = Napi::Error::New(env, "attnode: the call was cancelled before it ran");
      e.Set("name", "AbortError");
      pending->deferred.Reject(e.Value());
    } else {
      pending->deferred.Resolve(env.Undefined());
    }
  }
  delete c;
}

using Tsfn = Napi::TypedThreadSafeFunction<Pending, Completion, Settle>;

// Jobs submitted from one environment (the main thread or a worker). When the
// environment is torn down (worker.terminate(), process exit) its buffers are
// freed, so its queued jobs are cancelled and a running one is waited for
// before teardown continues (cleanup hooks run before the heap goes away).
struct EnvJobs {
  std::mutex mu;
  std::vector<std::weak_ptr<runtime::Job>> jobs;
};

void CancelAndWait(EnvJobs* ej) {
  std::vector<std::shared_ptr<runtime::Job>> live;
  {
    std::lock_guard<std::mutex> lock(ej->mu);
    for (auto& w : ej->jobs) {
      if (auto j = w.lock()) live.push_back(std::move(j));
    }
    ej->jobs.clear();
  }
  for (auto& j : live) j->cancelled.store(true, std::memory_order_release);
  for (auto& j : live) j->wait_finished();
}

EnvJobs* JobsOf(Napi::Env env) {
  static std::mutex mu;
  static std::vector<std::pair<napi_env, EnvJobs*>> registry;
  std::lock_guard<std::mutex> lock(mu);
  for (auto& [e, jobs] : registry) {
    if (e == static_cast<napi_env>(env)) return jobs;
  }
  auto* jobs = new EnvJobs();
  registry.emplace_back(env, jobs);
  env.AddCleanupHook([jobs, e = static_cast<napi_env>(env)] {
    CancelAndWait(jobs);
    std::lock_guard<std::mutex> lock(mu);
    for (auto it = registry.begin(); it != registry.end(); ++it) {
      if (it->first == e) {
        registry.erase(it);
        break;
      }
    }
    delete jobs;
  });
  return jobs;
}

// The calls were validated against these buffers: a buffer detached, transferred or shrunk since then would be
// written after it is gone.
void RequireUnchanged(Napi::Env env, const CommandList& list, const char* fn) {
  for (auto& kept : list.refs) {
    TypedArrayMemory now = typed_array_memory(env, kept.ref.Value());
    if (now.data != kept.data || now.byte_length < kept.byte_length) {
      throw Napi::TypeError::New(env, std::string("attnode.") + fn +
                                          ": a buffer recorded in this list was detached, transferred or resized "
                                          "after recording");
    }
  }
}

Napi::Value Submit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CommandList* list = UnwrapList(info, "submit");
  if (info.Length() != 1 && info.Length() != 2) throw Napi::TypeError::New(env, "attnode.submit: expected 1 or 2 arguments");
  // submit(list, { concurrent }): see runtime/executor.h.
  bool concurrent = false;
  if (info.Length() == 2 && !info[1].IsUndefined()) {
    if (!info[1].IsObject()) throw Napi::TypeError::New(env, "attnode.submit: argument 'options' must be an object");
    Napi::Value c = info[1].As<Napi::Object>().Get("concurrent");
    if (!c.IsUndefined()) {
      if (!c.IsBoolean()) throw Napi::TypeError::New(env, "attnode.submit: option 'concurrent' must be a boolean");
      concurrent = c.As<Napi::Boolean>().Value();
    }
  }
  if (list->submitted) throw Napi::Error::New(env, "attnode.submit: this command list was already submitted");
  if (list->replayed)
    throw Napi::Error::New(env,
                           "attnode.submit: this command list is run by runList (a replayed list is never submitted)");
  RequireUnchanged(env, *list, "submit");
  list->submitted = true;

  auto* pending = new Pending(env);
  pending->refs = std::move(list->refs);
  Napi::Promise promise = pending->deferred.Promise();
  Tsfn tsfn = Tsfn::New(env, "attnode.submit", 0, 1, pending, [](Napi::Env, void*, Pending* p) { delete p; });

  auto job = std::make_shared<runtime::Job>();
  job->concurrent = concurrent;
  job->steps = std::move(list->kernels);
  job->done = [tsfn](bool ran, const std::string& error) mutable {
    auto* c = new Completion{ran, error};
    if (tsfn.BlockingCall(c) != napi_ok) delete c;  // environment gone: nobody to tell
    tsfn.Release();
  };
  list->job = job;
  EnvJobs* ej = JobsOf(env);
  {
    std::lock_guard<std::mutex> lock(ej->mu);
    // Forget finished jobs so the list stays short.
    ej->jobs.erase(std::remove_if(ej->jobs.begin(), ej->jobs.end(), [](auto& w) { return w.expired(); }),
                   ej->jobs.end());
    ej->jobs.push_back(job);
  }
  runtime::Executor::instance().submit(std::move(job));
  return promise;
}

// runList(list): runs a recorded list's calls now, on the calling thread (as a sync call does), and keeps them, so
// the same list can run again: a program recorded once (a decode step over fixed buffers) costs one N-API call per
// run instead of one per op. What changes between runs must be read by the calls when they run (embedding ids,
// rope positions, indexCopy's index, pooledAttention's kvStarts / kvLengths), and those calls check such values
// again then: a bad one fails the run with an Error naming the op and argument, before or instead of its kernel.
// Calls before the failing one have run. A replayed list cannot be submitted.
// Makes `list` a replayed one (see RunList): its calls move to `frozen`, its references are made unique.
void Freeze(CommandList* list) {
  if (!list->frozen) list->frozen = std::make_shared<const std::vector<Kernel>>(std::move(list->kernels));
  list->kernels.clear();
  list->replayed = true;
  if (!list->compact) {
    // One entry per memory start, the longest validated length kept: the same buffers recur in many calls.
    std::sort(list->refs.begin(), list->refs.end(), [](const KeptArray& a, const KeptArray& b) {
      return a.data != b.data ? a.data < b.data : a.byte_length > b.byte_length;
    });
    list->refs.erase(std::unique(list->refs.begin(), list->refs.end(),
                                 [](const KeptArray& a, const KeptArray& b) { return a.data == b.data; }),
                     list->refs.end());
    list->compact = true;
  }
}

Napi::Value RunList(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CommandList* list = UnwrapList(info, "runList");
  if (info.Length() != 1) throw Napi::TypeError::New(env, "attnode.runList: expected 1 argument (list)");
  if (list->submitted) throw Napi::Error::New(env, "attnode.runList: this command list was already submitted");
  Freeze(list);
  RequireUnchanged(env, *list, "runList");
  try {
    for (auto& k : *list->frozen) k();
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("attnode.runList: ") + e.what());
  }
  return env.Undefined();
}

// runListRecord(list, program, targets, values): appends to `list` (being recorded) one call that writes `values`
// (an Int32Array, copied now) into the Int32Arrays `targets` (in order, each filled whole) and then runs
// `program`'s calls, as runList would. The async form of a replayed step: the values a step writes are captured
// when it is recorded, so two recorded steps of one program never see each other's. `list` keeps `program`'s
// buffers and the targets alive until it has run. The program's calls check the values again when they run.
Napi::Value RunListRecord(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "runListRecord";
  CommandList* list = RecordingTarget(info, fn);
  if (info.Length() != 4)
    throw Napi::TypeError::New(env, "attnode.runListRecord: expected 4 arguments (list, program, targets, values)");
  Napi::Value pv = info[1];
  if (!pv.IsExternal() || !pv.As<Napi::Object>().CheckTypeTag(&kCommandListTag)) {
    throw Napi::TypeError::New(
        env, "attnode.runListRecord: argument 'program' must be a command list from createCommandList()");
  }
  CommandList* program = pv.As<Napi::External<CommandList>>().Data();
  if (program == list)
    throw Napi::RangeError::New(env, "attnode.runListRecord: argument 'program' must not be 'list' itself");
  if (program->submitted)
    throw Napi::Error::New(env, "attnode.runListRecord: argument 'program' was already submitted");
  if (!info[2].IsArray())
    throw Napi::TypeError::New(env, "attnode.runListRecord: argument 'targets' must be an array of Int32Arrays");
  Napi::Array targets = info[2].As<Napi::Array>();
  TypedArrayMemory vm = typed_array_memory(env, info[3]);
  if (!info[3].IsTypedArray() || vm.type != napi_int32_array) {
    throw Napi::TypeError::New(env, "attnode.runListRecord: argument 'values' must be an Int32Array");
  }
  KeepAlive refs;
  std::vector<std::pair<int32_t*, size_t>> spans;
  size_t total = 0;
  for (uint32_t i = 0; i < targets.Length(); ++i) {
    Napi::Value t = targets.Get(i);
    TypedArrayMemory m = typed_array_memory(env, t);
    if (!t.IsTypedArray() || m.type != napi_int32_array || m.data == nullptr) {
      throw Napi::TypeError::New(env,
                                 "attnode.runListRecord: 'targets[" + std::to_string(i) + "]' must be an Int32Array");
    }
    spans.emplace_back(static_cast<int32_t*>(m.data), m.element_length);
    total += m.element_length;
    refs.push_back(KeptArray{Napi::Persistent(t), m.data, m.byte_length});
  }
  if (vm.element_length != total) {
    throw Napi::RangeError::New(env, "attnode.runListRecord: argument 'values' must hold " + std::to_string(total) +
                                         " entries (the targets' lengths), got " + std::to_string(vm.element_length));
  }
  const int32_t* vp = static_cast<const int32_t*>(vm.data);
  std::vector<int32_t> values(vp, vp + total);
  Freeze(program);
  // The program's buffers stay alive (and are checked at submit) as this list's own.
  for (auto& kept : program->refs)
    refs.push_back(KeptArray{Napi::Persistent(kept.ref.Value()), kept.data, kept.byte_length});
  AppendToList(
      list,
      [calls = program->frozen, spans = std::move(spans), values = std::move(values)] {
        size_t off = 0;
        for (auto& [dst, n] : spans) {
          std::copy(values.begin() + off, values.begin() + off + n, dst);
          off += n;
        }
        for (auto& k : *calls) k();
      },
      std::move(refs));
  return env.Undefined();
}

Napi::Value Cancel(const Napi::CallbackInfo& info) {
  CommandList* list = UnwrapList(info, "cancel");
  if (auto job = list->job.lock()) job->cancelled.store(true, std::memory_order_release);
  return info.Env().Undefined();
}

Napi::Value Pending_(const Napi::CallbackInfo& info) {
  Args args(info, "pendingJobs", 0);
  return Napi::Number::New(info.Env(), runtime::Executor::instance().pending());
}

}  // namespace

CommandList* RecordingTarget(const Napi::CallbackInfo& info, const char* fn) {
  CommandList* list = UnwrapList(info, fn);
  if (list->submitted) {
    throw Napi::Error::New(info.Env(), std::string("attnode.") + fn + ": the command list was already submitted");
  }
  if (list->replayed) {
    throw Napi::Error::New(info.Env(),
                           std::string("attnode.") + fn +
                               ": the command list is replayed (runList, runListRecord) and takes no more calls");
  }
  return list;
}

void AppendToList(CommandList* list, Kernel kernel, KeepAlive&& refs) {
  if (kernel) list->kernels.push_back(std::move(kernel));
  list->compact = false;
  for (auto& r : refs) list->refs.push_back(std::move(r));
}

void RegisterCommandLists(Napi::Env env, Napi::Object exports) {
  exports.Set("createCommandList", Napi::Function::New(env, CreateCommandList, "createCommandList"));
  exports.Set("submit", Napi::Function::New(env, Submit, "submit"));
  exports.Set("cancel", Napi::Function::New(env, Cancel, "cancel"));
  exports.Set("runList", Napi::Function::New(env, RunList, "runList"));
  exports.Set("runListRecord", Napi::Function::New(env, RunListRecord, "runListRecord"));
  exports.Set("pendingJobs", Napi::Function::New(env, Pending_, "pendingJobs"));
}

}  // namespace attnode::binding
