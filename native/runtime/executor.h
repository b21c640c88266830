// The executor: one native thread that runs submitted jobs (recorded command
// lists) in order, off the JS thread. Each job's kernels use the thread pool
// as any caller does, so async work never oversubscribes the cores and never
// occupies libuv's threads (which fs, dns and zlib need).
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
