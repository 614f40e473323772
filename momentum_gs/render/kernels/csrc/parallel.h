// How the kernels split their work over threads: the pool of pool.h (persistent threads, none started per
// call; a call never waits for a thread that has not started), with a thread count of their own (threads():
// the config's ``threads``, set_kernel_threads), which may exceed torch's intra-op count. On small views
// PyTorch's own ops keep one thread, their parallel regions costing more than they save, while the kernels
// still gain (config/device.py has the measurements); at::parallel_for would tie the kernels to torch's count
// and, as OpenMP's teams do, wait at its end for threads another process keeps off a core. Inside a parallel
// region, on the pool's threads, or below a kernel's grain, the work runs on the calling thread.
//
// Results never depend on how the work was split: every output element is written by one item's iteration,
// and where items' contributions are summed (the compositor's per-Gaussian gradients, SSIM's sum) they are
// summed in an order fixed by the data (pair order, fixed bands of rows), not by the threads. So a kernel
// gives the same bits at any thread count, and two runs give the same bits.
//
// Each kernel's grain is the work below which a second thread costs more than it saves.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>

#include "pool.h"

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
// torch's count; 1 inside a parallel region or on the pool's threads.
inline int64_t threads() {
  if (in_pool() || at::in_parallel_region()) return 1;
  const int64_t torch = at::get_num_threads(), count = kernel_threads().count.load(std::memory_order_relaxed);
  return count > 0 && kernel_threads().torch.load(std::memory_order_relaxed) == torch ? count : torch;
}

// How many threads ``work`` units take when a thread needs at least ``per_thread`` of them: 1 to threads().
inline int64_t workers(int64_t work, int64_t per_thread) {
  return std::max<int64_t>(1, std::min<int64_t>(threads(), work / grain(per_thread)));
}

// fn(item, state) for every item in [0, n), on up to ``count`` threads, each with its own state (make_state(),
// made once a thread has an item), the items handed out one at a time in order (dynamic: items whose costs
// differ by orders of magnitude, as tiles do, still end together).
template <typename Make, typename Fn>
void dynamic_items(int64_t n, int64_t count, const Make& make_state, const Fn& fn) {
  if (count <= 1 || n <= 1 || in_pool()) {
    if (n <= 0) return;
    auto state = make_state();
    for (int64_t item = 0; item < n; ++item) fn(item, state);
    return;
  }
  auto job = std::make_shared<Job>();
  Job* raw = job.get();  // the pool's threads keep the job alive while they hold it
  job->helpers.store(count - 1);
  job->work = [raw, n, &make_state, &fn] {  // the references are read only with an item claimed
    int64_t item = raw->next.fetch_add(1);
    if (item >= n) return;
    auto state = make_state();
    for (; item < n; item = raw->next.fetch_add(1)) fn(item, state);
  };
  Pool::instance().run(job);
}

// fn(begin, end) over [0, n) in pieces of at least ``min_chunk`` items (grain), about four a thread (a thread
// slowed by other work leaves its pieces to the others), on up to workers() threads.
template <typename Fn>
inline void chunks(int64_t n, int64_t min_chunk, const Fn& fn) {
  if (n <= 0) return;
  const int64_t count = workers(n, min_chunk);
  if (count == 1) return fn(0, n);
  const int64_t pieces = std::max(count, std::min(4 * count, n / grain(min_chunk))), size = (n + pieces - 1) / pieces;
  dynamic_items((n + size - 1) / size, count, [] { return 0; }, [&](int64_t piece, int&) {
    fn(piece * size, std::min(n, (piece + 1) * size));
  });
}

}  // namespace mgs
