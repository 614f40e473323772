// How the kernels split their work over threads: ATen's at::parallel_for, so torch's one intra-op pool
// (persistent: no thread is started per call) and its thread count (torch.set_num_threads, the config's
// ``threads``); inside a parallel region, or below a kernel's grain, the work runs on the calling thread.
//
// Results never depend on how the work was split: every output element is written by one item's iteration,
// and where items' contributions are summed (the compositor's per-Gaussian gradients, SSIM's sum) they are
// summed in an order fixed by the data (pair order, fixed bands of rows), not by the threads. So a kernel
// gives the same bits at any thread count, and two runs give the same bits.
//
// Each kernel's grain is the work below which a second thread costs more than it saves (its fork and join,
// a few microseconds on an idle machine; a time slice where another process holds the other core).
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace mgs {

// When set (tests: ``split_small_work``), every grain is 1, so that tiny test inputs take the paths that
// several threads take, chunk borders included. One flag for the process; set it only between kernel calls.
inline std::atomic<bool>& split_small() {
  static std::atomic<bool> on{false};
  return on;
}

// ``grain``, or 1 while split_small is set.
inline int64_t grain(int64_t grain) { return split_small().load(std::memory_order_relaxed) ? 1 : grain; }

// How many threads ``work`` units take when a thread needs at least ``per_thread`` of them: 1 to torch's count.
inline int64_t workers(int64_t work, int64_t per_thread) {
  const int64_t threads = at::in_parallel_region() ? 1 : at::get_num_threads();
  return std::max<int64_t>(1, std::min<int64_t>(threads, work / grain(per_thread)));
}

// fn(begin, end) over [0, n) in chunks of at least ``min_chunk`` items (grain), on torch's threads.
template <typename Fn>
inline void chunks(int64_t n, int64_t min_chunk, const Fn& fn) {
  if (n > 0) at::parallel_for(0, n, grain(min_chunk), fn);
}

// fn(item, state) for every item in [0, n), on ``count`` threads (workers()), each with its own state
// (make_state()), the items handed out one at a time in order (dynamic: items whose costs differ by orders of
// magnitude, as tiles do, still end together).
template <typename Make, typename Fn>
void dynamic_items(int64_t n, int64_t count, const Make& make_state, const Fn& fn) {
  std::atomic<int64_t> next{0};
  auto work = [&](int64_t, int64_t) {
    auto state = make_state();
    for (int64_t item = next.fetch_add(1, std::memory_order_relaxed); item < n;
         item = next.fetch_add(1, std::memory_order_relaxed)) {
      fn(item, state);
    }
  };
  if (count <= 1) {
    work(0, 1);
  } else {
    at::parallel_for(0, count, 1, work);
  }
}

}  // namespace mgs
