#include "runtime/executor.h"
#include "runtime/thread_pool.h"
#include "runtime/thread_priority.h"

#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

namespace attnode::runtime {

struct Executor::Impl {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::shared_ptr<Job>> queue;
  std::atomic<int> pending{0};
  // Lane threads started (they never exit), lanes waiting for a job, jobs running, and whether one of those is
  // exclusive. All under `mu`.
  int lanes = 0;
  int idle = 0;
  int running = 0;
  bool exclusive = false;

  // As many concurrent jobs run at once as the pool has threads (read now: setNumThreads applies to the next job).
  static int width() { return ThreadPool::instance().num_threads(); }

  // Whether the oldest waiting job may start now (under `mu`).
  bool head_can_start() const {
    if (queue.empty() || exclusive) return false;
    return queue.front()->concurrent ? running < width() : running == 0;
  }

  // Under `mu`, after queueing a job: one more lane when the waiting jobs outnumber the idle lanes (an idle lane
  // counts until it has taken a job, so jobs queued back to back see it once) and the new job could run beside
  // those running (a concurrent one, fewer lanes than the pool has threads), or when there is no lane at all.
  void ensure_lane(bool concurrent) {
    if (idle >= static_cast<int>(queue.size())) return;
    if (lanes > 0 && !(concurrent && lanes < width())) return;
    ++lanes;
    std::thread([this] { loop(); }).detach();
  }

  void run(Job& job) {
    bool ran = true;
    std::string error;
    try {
      for (auto& step : job.steps) {
        if (job.cancelled.load(std::memory_order_acquire)) {
          ran = false;
          break;
        }
        step();
      }
    } catch (const std::exception& e) {
      error = e.what();
    } catch (...) {
      error = "unknown native error";
    }
    job.steps.clear();
    pending.fetch_sub(1, std::memory_order_acq_rel);
    if (job.done) job.done(ran, error);
    job.mark_finished();
  }

  void loop() {
    lower_background_thread_priority();
    std::unique_lock<std::mutex> lock(mu);
    for (;;) {
      ++idle;
      cv.wait(lock, [&] { return head_can_start(); });
      --idle;
      std::shared_ptr<Job> job = std::move(queue.front());
      queue.pop_front();
      ++running;
      const bool concurrent = job->concurrent;
      if (!concurrent) exclusive = true;
      // The next job may be able to start beside this one on another lane.
      const bool more = head_can_start();
      lock.unlock();
      if (more) cv.notify_one();
      if (concurrent) {
        ThreadPool::SerialScope serial;
        run(*job);
      } else {
        run(*job);
      }
      job.reset();
      lock.lock();
      --running;
      if (!concurrent) exclusive = false;
      // A finished job may unblock the head (an exclusive one waits for running == 0): wake every idle lane, since
      // a lane woken for a job it cannot start does not pass the wake-up on.
      if (head_can_start()) cv.notify_all();
    }
  }
};

void Job::wait_finished() {
  std::unique_lock<std::mutex> lock(finish_mu_);
  finish_cv_.wait(lock, [&] { return finished_; });
}

void Job::mark_finished() {
  {
    std::lock_guard<std::mutex> lock(finish_mu_);
    finished_ = true;
  }
  finish_cv_.notify_all();
}

Executor::Executor() : impl_(new Impl) {}

// Leaked on purpose, like the thread pool: the threads must outlive every
// environment (worker_threads come and go) and process exit must not wait on them.
Executor& Executor::instance() {
  static Executor* executor = new Executor();
  return *executor;
}

void Executor::submit(std::shared_ptr<Job> job) {
  impl_->pending.fetch_add(1, std::memory_order_acq_rel);
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    const bool concurrent = job->concurrent;
    impl_->queue.push_back(std::move(job));
    impl_->ensure_lane(concurrent);
  }
  impl_->cv.notify_all();
}

int Executor::pending() const { return impl_->pending.load(std::memory_order_acquire); }

}  // namespace attnode::runtime
