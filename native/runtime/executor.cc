#include "runtime/executor.h"
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
  bool started = false;

  void loop() {
    lower_background_thread_priority();
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return !queue.empty(); });
        job = std::move(queue.front());
        queue.pop_front();
      }
      bool ran = true;
      std::string error;
      try {
        for (auto& step : job->steps) {
          if (job->cancelled.load(std::memory_order_acquire)) {
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
      job->steps.clear();
      pending.fetch_sub(1, std::memory_order_acq_rel);
      if (job->done) job->done(ran, error);
      job->mark_finished();
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

// Leaked on purpose, like the thread pool: the thread must outlive every
// environment (worker_threads come and go) and process exit must not wait on it.
Executor& Executor::instance() {
  static Executor* executor = new Executor();
  return *executor;
}

void Executor::submit(std::shared_ptr<Job> job) {
  impl_->pending.fetch_add(1, std::memory_order_acq_rel);
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->queue.push_back(std::move(job));
    if (!impl_->started) {
      impl_->started = true;
      std::thread([impl = impl_] { impl->loop(); }).detach();
    }
  }
  impl_->cv.notify_one();
}

int Executor::pending() const { return impl_->pending.load(std::memory_order_acquire); }

}  // namespace attnode::runtime
