// The kernels' threads: one persistent pool per process (threads started on first need, none per call) whose
// jobs never wait for a thread that has not started. A job is items handed out one at a time; the calling
// thread takes items at once, helpers join as they wake, and the call returns when every item is done and
// no helper holds one. A helper that wakes late (its core held by another process, a slow wake-up) finds
// nothing left and goes back to sleep: a busy machine makes a call as slow as one thread, never slower.
// OpenMP's teams end in a barrier that waits for every thread, so each call of a two-thread team cost up to
// a time slice where another process held the second core: 6× slower training than one thread (parallel.h).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

namespace mgs {

// One call's work: ``work()`` claims items from ``next`` and runs them until none is left. ``helpers`` is how
// many pool threads may still join; ``active`` counts the threads inside work().
struct Job {
  std::function<void()> work;
  std::atomic<int64_t> next{0}, active{0}, helpers{0};
  std::exception_ptr error;
  std::atomic_flag failed = ATOMIC_FLAG_INIT;
};

// True on the pool's threads: a kernel called there runs on its caller's thread.
inline bool& in_pool() {
  thread_local bool inside = false;
  return inside;
}

constexpr int64_t kSpinMicroseconds = 1000;  // how long a pool thread looks for the next job before sleeping

// One step of a spin: tells the core this thread only waits, so that the thread beside it on the same core
// (SMT) keeps the execution units (a bare load loop took a fifth off a kernel run beside it).
inline void relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
  asm volatile("yield");
#endif
}

class Pool {
 public:
  // Runs ``job`` on the calling thread and up to job.helpers pool threads; returns when it is done.
  void run(const std::shared_ptr<Job>& job) {
    grow(job->helpers.load());
    {
      std::lock_guard<std::mutex> lock(mutex_);
      current_ = job;
      generation_.fetch_add(1);
    }
    wake_.notify_all();
    enter(*job);
    while (job->active.load() > 0) std::this_thread::yield();  // helpers that hold an item finish it
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (current_ == job) current_.reset();
    }
    if (job->error) std::rethrow_exception(job->error);
  }

  static Pool& instance() {
    static Pool* pool = new Pool();  // never destroyed: its threads live as long as the process
    return *pool;
  }

 private:
  static void enter(Job& job) {
    job.active.fetch_add(1);
    try {
      job.work();
    } catch (...) {
      if (!job.failed.test_and_set()) job.error = std::current_exception();
      job.next.store(INT64_MAX / 2);  // no more items for anyone
    }
    job.active.fetch_sub(1);
  }

  void grow(int64_t count) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (; started_ < count; ++started_) std::thread([this] { loop(); }).detach();
  }

  // A pool thread: waits for a new job (spinning briefly, then asleep), joins it if it may.
  void loop() {
    in_pool() = true;
    uint64_t seen = generation_.load();
    for (;;) {
      // a kernel call follows another within a millisecond through most of a step: spin that long (yielding
      // the core to any other runnable thread), then sleep
      const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(kSpinMicroseconds);
      for (int spin = 1; generation_.load(std::memory_order_relaxed) == seen; ++spin) {
        relax();
        if (spin % 64 == 0 && (std::this_thread::yield(), std::chrono::steady_clock::now() > until)) break;
      }
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_.load() != seen; });
        seen = generation_.load();
        job = current_;
      }
      if (job && job->helpers.fetch_sub(1) > 0) enter(*job);
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::shared_ptr<Job> current_;
  std::atomic<uint64_t> generation_{0};
  int64_t started_ = 0;  // the pool's threads (under mutex_)
};

}  // namespace mgs
