// How the kernels split their work over threads: OpenMP teams from the pool torch uses (the same libgomp;
// persistent threads, none started per call), of a count of their own (threads()): the config's ``threads``
// (set_kernel_threads), which may exceed torch's intra-op count. On small views PyTorch's own ops keep one
// thread, their parallel regions costing more than they save, while the kernels still gain (config/device.py
// has the measurements); at::parallel_for would tie the kernels to torch's count. Inside a parallel region, or
// below a kernel's grain, the work runs on the calling thread.
//
// Results never depend on how the work was split: every output element is written by one item's iteration,
// and where items' contributions are summed (the compositor's per-Gaussian gradients, SSIM's sum) they are
// summed in an order fixed by the data (pair order, fixed bands of rows), not by the threads. So a kernel
// gives the same bits at any thread count, and two runs give the same bits.
//
// Each kernel's grain is the work below which a second thread costs more than it saves (its fork and join).
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace mgs {

// When set (tests: ``split_small_work``), every grain is 1, so that tiny test inputs take the paths that
// several threads take, chunk borders included. One flag for the process; set it only between kernel calls.
inline std::atomic<bool>& split_small() {
  static std::atomic<bool> on{false};
  return on;
}

// The kernels' thread count (``set_kernel_threads``) and torch's count when it was set: the kernels take it
// while torch's count is still that one, else torch's (a later torch.set_num_threads decides).
struct KernelThreads {
  std::atomic<int64_t> count{0}, torch{0};
};
inline KernelThreads& kernel_threads() {
  static KernelThreads setting;
  return setting;
}

// ``grain``, or 1 while split_small is set.
inline int64_t grain(int64_t grain) { return split_small().load(std::memory_order_relaxed) ? 1 : grain; }

// The threads a kernel may take: kernel_threads() while torch's count is the one it was set with, else
// torch's count; 1 inside a parallel region.
inline int64_t threads() {
  if (at::in_parallel_region()) return 1;
  const int64_t torch = at::get_num_threads(), count = kernel_threads().count.load(std::memory_order_relaxed);
  return count > 0 && kernel_threads().torch.load(std::memory_order_relaxed) == torch ? count : torch;
}

// How many threads ``work`` units take when a thread needs at least ``per_thread`` of them: 1 to threads().
inline int64_t workers(int64_t work, int64_t per_thread) {
  return std::max<int64_t>(1, std::min<int64_t>(threads(), work / grain(per_thread)));
}

// fn(worker, count) on ``count`` threads (worker 0 is the calling thread's). The team is always threads()
// strong, the others idle, as ATen's teams are: GOMP's pool keeps its threads while team sizes do not change.
template <typename Fn>
void on_threads(int64_t count, const Fn& fn) {
#ifdef _OPENMP
  if (count > 1) {
    std::exception_ptr error;
    std::atomic_flag failed = ATOMIC_FLAG_INIT;
#pragma omp parallel num_threads(static_cast<int>(threads()))
    {
      const int64_t worker = omp_get_thread_num();
      if (worker < count) {
        try {
          fn(worker, count);
        } catch (...) {
          if (!failed.test_and_set()) error = std::current_exception();
        }
      }
    }
    if (error) std::rethrow_exception(error);
    return;
  }
#endif
  fn(0, 1);
}

// fn(begin, end) over [0, n) in chunks of at least ``min_chunk`` items (grain), one chunk per thread.
template <typename Fn>
inline void chunks(int64_t n, int64_t min_chunk, const Fn& fn) {
  if (n <= 0) return;
  const int64_t count = workers(n, min_chunk), size = (n + count - 1) / count;
  on_threads(count, [&](int64_t worker, int64_t) {
    const int64_t begin = worker * size;
    if (begin < n) fn(begin, std::min(n, begin + size));
  });
}

// fn(item, state) for every item in [0, n), on ``count`` threads (workers()), each with its own state
// (make_state()), the items handed out one at a time in order (dynamic: items whose costs differ by orders of
// magnitude, as tiles do, still end together).
template <typename Make, typename Fn>
void dynamic_items(int64_t n, int64_t count, const Make& make_state, const Fn& fn) {
  std::atomic<int64_t> next{0};
  on_threads(count, [&](int64_t, int64_t) {
    auto state = make_state();
    for (int64_t item = next.fetch_add(1, std::memory_order_relaxed); item < n;
         item = next.fetch_add(1, std::memory_order_relaxed)) {
      fn(item, state);
    }
  });
}

}  // namespace mgs
