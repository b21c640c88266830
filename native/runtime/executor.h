// The executor: native threads ("lanes") that run submitted jobs (recorded
// command lists) in submission order, off the JS thread, and never on libuv's
// threads (which fs, dns and zlib need).
//
// A job is exclusive (the default) or concurrent. An exclusive job starts when
// every earlier job has finished and runs alone: its kernels use the thread
// pool as any caller does (the lane is the pool's thread 0), so async work
// never oversubscribes the cores. A concurrent job (independent of every other
// job in flight: a pipeline's batches) starts as soon as the jobs before it
// are all concurrent and fewer than the pool's size of them run; it runs whole
// on its lane, every kernel on that one thread (ThreadPool::SerialScope). So
// with n threads, n independent batches run side by side, each at one-thread
// speed, instead of one batch at a time with every op split over n threads
// (small ops split badly; whole batches share nothing). Later jobs may then
// finish before earlier ones; `done` reports each as it finishes.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace attnode::runtime {

struct Job {
  // Run in order; a step may throw (std::exception) to fail the job.
  std::vector<std::function<void()>> steps;
  // Set from any thread; checked before the job starts and between steps.
  std::atomic<bool> cancelled{false};
  // See the file comment: may run on one thread beside other concurrent jobs.
  bool concurrent = false;
  // Called once on the executor thread: ran = false when cancelled before
  // finishing, error non-empty when a step threw.
  std::function<void(bool ran, const std::string& error)> done;

  // Blocks until the executor is completely done with this job (after
  // `done`). For teardown: the memory its steps write must outlive them.
  void wait_finished();
  // Called by the executor only.
  void mark_finished();

 private:
  std::mutex finish_mu_;
  std::condition_variable finish_cv_;
  bool finished_ = false;
};

class Executor {
 public:
  static Executor& instance();
  void submit(std::shared_ptr<Job> job);
  // Jobs queued or running (for diagnostics and tests).
  int pending() const;

  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

 private:
  Executor();
  struct Impl;
  Impl* impl_;
};

}  // namespace attnode::runtime
