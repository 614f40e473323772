// The mean SSIM of two images and its gradient on the CPU, in two loops over the pixels instead of ~40 tensor
// operations and four depthwise convolutions.
//
// The semantics are those of momentum_gs/losses.py (_MeanSSIM on PyTorch operations), which stays the
// reference: a separable Gaussian window of K taps with zero padding ("same" size), the local moments
// E[x], E[y], E[x² + y²], E[xy] of every channel, S = (2μxμy + C1)(2σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2))
// per pixel and channel, averaged. The backward blurs the gradients of S with respect to the moments with
// the same window (the zero-padded filter with a symmetric window is its own adjoint).
//
// Images are [B, H, W, C] (channels last, as the renderer and the photos are): every row of W·C values is
// filtered along x by shifting it C values per tap, so no transposes are needed, and the blur is streamed row
// by row (blur_rows): S, the maps and the gradients of a row are made as soon as its blurred moments are,
// from a few rows that stay in the cache. The kernels' threads take ranges of rows (parallel.h), each streamed with
// the K/2 rows above and below it; the sum of S is taken in double per fixed band of rows and the bands'
// sums added in order: the same bits at any thread count.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <vector>

#include "parallel.h"
#include "simd.h"

namespace {

constexpr int64_t kMaxTaps = 63;  // window taps (losses.ssim uses PyTorch's path for wider windows)
constexpr int64_t kBandRows = 16;  // Σ S is summed per band of this many rows, then band by band: fixed bands
constexpr int64_t kMinValues = 32768;  // values (pixels × channels) below which a second thread costs more

using Sums = std::array<double, 4>;

using mgs::load;
using mgs::store;

// out[i] = Σ_{k in [first, last)} window[k]·tap(k)[i] for i < n, each sum from 0 in tap order. Four vectors
// of outputs at a time: four independent chains of multiply-adds, so that one vector's sum does not wait for
// the last step of the one before (one chain is bound by the multiply-add's latency); the arithmetic of each
// output is the same in every branch.
template <typename T, typename Tap>
inline void weighted_sum(int64_t n, int64_t first, int64_t last, const T* window, Tap tap, T* out) {
  using V = typename mgs::Simd<T>::V;
  constexpr int64_t lanes = mgs::Simd<T>::lanes;
  int64_t i = 0;
  for (; i + 4 * lanes <= n; i += 4 * lanes) {
    V s0{}, s1{}, s2{}, s3{};
    for (int64_t k = first; k < last; ++k) {
      const T w = window[k];
      const T* t = tap(k) + i;
      s0 += w * load<V>(t), s1 += w * load<V>(t + lanes), s2 += w * load<V>(t + 2 * lanes);
      s3 += w * load<V>(t + 3 * lanes);
    }
    store(out + i, s0), store(out + i + lanes, s1), store(out + i + 2 * lanes, s2), store(out + i + 3 * lanes, s3);
  }
  for (; i + lanes <= n; i += lanes) {
    V sum{};
    for (int64_t k = first; k < last; ++k) sum += window[k] * load<V>(tap(k) + i);
    store(out + i, sum);
  }
  for (; i < n; ++i) {
    T sum = 0;
    for (int64_t k = first; k < last; ++k) sum += window[k] * tap(k)[i];
    out[i] = sum;
  }
}

// The blur of output rows [first, last), streamed row by row: input row r of each of ``planes`` planes
// (``source(r, rows)`` sets rows[p] to it), from ``first`` − K/2 to ``last`` + K/2 within the image, is blurred
// along x (shifted by C values per tap) into a ring of the last K such rows; as soon as the K rows around
// output row o are in, they are combined along y and ``sink(o, blurred)`` gets blurred[p], row o of plane p.
// Zero padding: taps outside the row or the image are left out. Every output value is the sum, from 0 and in
// tap order, of its taps (a vector of outputs at a time, kept in a register): the arithmetic of a whole-image
// pass along x then y, with a working set of K rows instead of whole planes, which stays in the cache at any
// image size, and the same values whatever range of rows a call is given (threads take ranges of rows).
template <typename T, typename Source, typename Sink>
void blur_rows(int64_t planes, int64_t height, int64_t width, int64_t channels, const T* window, int64_t taps,
               int64_t first, int64_t last, Source source, Sink sink) {
  const int64_t row = width * channels, half = taps / 2, reach = half * channels;
  thread_local std::vector<T> ring, out, padded;  // reused: fresh pages cost more than the work
  ring.resize(taps * planes * row), out.resize(planes * row);
  // along x, from a copy of the row with ``reach`` zeros on each side: every output a vector of taps, no edge
  // cases (a zero tap adds +0, which leaves the sum as the taps inside the row make it)
  padded.assign(row + 2 * reach, T(0));
  const T* lines[8];
  T* blurred[8];
  for (int64_t p = 0; p < planes; ++p) blurred[p] = out.data() + p * row;
  auto along_y = [&](int64_t o) {  // output row o from ring rows o − half … o + half (those inside the image)
    const int64_t low = std::max<int64_t>(0, half - o), high = std::min<int64_t>(taps, height + half - o);
    for (int64_t p = 0; p < planes; ++p) {
      const T* taps_of[kMaxTaps];
      for (int64_t k = low; k < high; ++k) taps_of[k] = ring.data() + (((o - half + k) % taps) * planes + p) * row;
      weighted_sum(row, low, high, window, [&](int64_t k) { return taps_of[k]; }, blurred[p]);
    }
    sink(o, static_cast<T* const*>(blurred));
  };
  const int64_t end = std::min(height, last + half);
  for (int64_t r = std::max<int64_t>(0, first - half); r < end; ++r) {
    source(r, lines);
    for (int64_t p = 0; p < planes; ++p) {
      std::memcpy(padded.data() + reach, lines[p], row * sizeof(T));
      const T* line = padded.data();  // tap k of output i: line[i + k·C]
      weighted_sum(row, 0, taps, window, [&](int64_t k) { return line + k * channels; },
                   ring.data() + ((r % taps) * planes + p) * row);
    }
    if (r - half >= first) along_y(r - half);
  }
  for (int64_t o = std::max(first, end - half); o < last; ++o) along_y(o);
}

// One row of n values: S from the moments, and the four maps the backward blurs.
template <typename T>
void ssim_row(const T* __restrict__ mu_x, const T* __restrict__ mu_y, const T* __restrict__ e_sq,
              const T* __restrict__ e_xy, T c1, T c2, int64_t n, T* __restrict__ values, T* __restrict__ map_x,
              T* __restrict__ map_y, T* __restrict__ map_sq, T* __restrict__ map_xy) {
  for (int64_t i = 0; i < n; ++i) {
    const T mu_xy = mu_x[i] * mu_y[i], mu_sq = mu_x[i] * mu_x[i] + mu_y[i] * mu_y[i];
    const T luminance = 2 * mu_xy + c1, contrast = 2 * (e_xy[i] - mu_xy) + c2;
    const T luminance_norm = mu_sq + c1, contrast_norm = (e_sq[i] - mu_sq) + c2;
    const T denominator = luminance_norm * contrast_norm;
    const T s = luminance * contrast / denominator;
    values[i] = s;
    const T inverse = 1 / denominator;
    const T p = (contrast - luminance) * inverse, q = s * (luminance_norm - contrast_norm) * inverse;
    map_x[i] = mu_y[i] * p + mu_x[i] * q;
    map_y[i] = mu_x[i] * p + mu_y[i] * q;
    map_sq[i] = s / contrast_norm;
    map_xy[i] = luminance * inverse;
  }
}

// One image's output rows [first, last): the moments, S, and the four maps the backward blurs (∂S/∂μx and
// ∂S/∂μy halved, S / B2, A1 / D) into maps [4, B, H·W·C]; Σ S of the rows of band j (kBandRows rows) into
// sums[j], four running sums in double by pixel index mod 4 (values past the last whole group of four in
// sums[j][0]).
template <typename T>
void forward_rows(const T* x, const T* y, const T* window, int64_t taps, int64_t height, int64_t width,
                  int64_t channels, T c1, T c2, int64_t first, int64_t last, T* maps, int64_t map_stride,
                  Sums* sums) {
  const int64_t row = width * channels, size = height * row;
  thread_local std::vector<T> products, values;  // one row of x² + y² and xy; one row of S
  products.resize(2 * row), values.resize(row);
  auto source = [&](int64_t r, const T** lines) {
    const T *xr = x + r * row, *yr = y + r * row;
    T *__restrict__ sq = products.data(), *__restrict__ xy = sq + row;
    for (int64_t i = 0; i < row; ++i) sq[i] = xr[i] * xr[i] + yr[i] * yr[i], xy[i] = xr[i] * yr[i];
    lines[0] = xr, lines[1] = yr, lines[2] = sq, lines[3] = xy;
  };
  const int64_t blocked = size / 4 * 4;  // values past it go to sums[0]
  auto sink = [&](int64_t o, T* const* moments) {
    const int64_t at = o * row;
    ssim_row(moments[0], moments[1], moments[2], moments[3], c1, c2, row, values.data(), maps + at,
             maps + map_stride + at, maps + 2 * map_stride + at, maps + 3 * map_stride + at);
    const T* s_row = values.data();
    double* band = sums[o / kBandRows].data();
    int64_t i = 0;
    if (at % 4 == 0) {  // whole groups of four start the row: four running sums in a vector register
      double group[4] = {band[0], band[1], band[2], band[3]};  // a local: the sums in memory would stay there
      for (; i + 4 <= row && at + i + 4 <= blocked; i += 4) {
        for (int j = 0; j < 4; ++j) group[j] += double(s_row[i + j]);
      }
      for (int j = 0; j < 4; ++j) band[j] = group[j];
    }
    for (; i < row; ++i) band[at + i < blocked ? (at + i) & 3 : 0] += double(s_row[i]);
  };
  blur_rows<T>(4, height, width, channels, window, taps, first, last, source, sink);
}

// fn(b, first, last) for output rows [first, last) of image b, covering every row of the batch's B images
// once, in whole bands of kBandRows rows split over the kernels' threads (each range streams its rows with K/2
// rows more on each side; at least kMinValues values and two bands a range).
template <typename Fn>
void for_each_rows(int64_t batch, int64_t height, int64_t row, const Fn& fn) {
  const int64_t bands = (height + kBandRows - 1) / kBandRows;
  const int64_t band_values = std::max<int64_t>(1, row * kBandRows);
  const int64_t min_bands = std::max<int64_t>(2, (kMinValues + band_values - 1) / band_values);
  mgs::chunks(batch * bands, min_bands, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin / bands; b * bands < end; ++b) {
      const int64_t first = std::max(begin, b * bands) - b * bands;
      const int64_t last = std::min(end, (b + 1) * bands) - b * bands;
      fn(b, first * kBandRows, std::min(height, last * kBandRows));
    }
  });
}

void check(const at::Tensor& x, const at::Tensor& y, const at::Tensor& window) {
  TORCH_CHECK(x.device().is_cpu(), "ssim: CPU tensors only");
  TORCH_CHECK(x.dim() == 4 && x.is_contiguous() && y.sizes() == x.sizes() && y.is_contiguous(),
              "ssim: x, y [B, H, W, C] contiguous");
  TORCH_CHECK(window.dim() == 1 && window.size(0) % 2 == 1 && window.size(0) <= kMaxTaps && window.is_contiguous(),
              "ssim: odd window [K], K <= 63");
  TORCH_CHECK(y.scalar_type() == x.scalar_type() && window.scalar_type() == x.scalar_type(), "ssim: one dtype");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, "ssim: float32 or float64");
}

// Σ S: the bands' sums, added image by image and band by band (fixed bands: the same bits at any thread count).
template <typename T>
double forward_typed(const at::Tensor& x, const at::Tensor& y, const at::Tensor& window, double c1, double c2,
                     at::Tensor& maps) {
  const int64_t batch = x.size(0), height = x.size(1), width = x.size(2), channels = x.size(3);
  const int64_t size = height * width * channels, bands = (height + kBandRows - 1) / kBandRows;
  std::vector<Sums> sums(batch * bands, Sums{0, 0, 0, 0});
  const T *xs = x.data_ptr<T>(), *ys = y.data_ptr<T>(), *w = window.data_ptr<T>();
  T* m = maps.data_ptr<T>();
  for_each_rows(batch, height, width * channels, [&](int64_t b, int64_t first, int64_t last) {
    forward_rows<T>(xs + b * size, ys + b * size, w, window.size(0), height, width, channels, T(c1), T(c2), first,
                    last, m + b * size, batch * size, sums.data() + b * bands);
  });
  double total = 0;
  for (const Sums& band : sums) total += (band[0] + band[1]) + (band[2] + band[3]);
  return total;
}

// Σ S over every pixel and channel of x, y [B, H, W, C]; maps [4, B, H, W, C] gets what ssim_backward reads.
double ssim_forward(const at::Tensor& x, const at::Tensor& y, const at::Tensor& window, double c1, double c2,
                    at::Tensor maps) {
  check(x, y, window);
  TORCH_CHECK(maps.is_contiguous() && maps.numel() == 4 * x.numel() && maps.scalar_type() == x.scalar_type(),
              "ssim: maps [4, B, H, W, C]");
  if (x.scalar_type() == at::kFloat) return forward_typed<float>(x, y, window, c1, c2, maps);
  return forward_typed<double>(x, y, window, c1, c2, maps);
}

template <typename T>
void backward_typed(const at::Tensor& x, const at::Tensor& y, const at::Tensor& window, const at::Tensor& maps,
                    double scale, bool need_x, bool need_y, at::Tensor& grad_x, at::Tensor& grad_y) {
  const int64_t batch = x.size(0), height = x.size(1), width = x.size(2), channels = x.size(3);
  const int64_t size = height * width * channels;
  const T *xs = x.data_ptr<T>(), *ys = y.data_ptr<T>(), *w = window.data_ptr<T>(), *m = maps.data_ptr<T>();
  T *gx = need_x ? grad_x.data_ptr<T>() : nullptr, *gy = need_y ? grad_y.data_ptr<T>() : nullptr;
  const T twice = T(2 * scale);
  const int64_t row = width * channels;
  for_each_rows(batch, height, row, [&](int64_t b, int64_t first, int64_t last) {
    // the maps are read where they are; ∂S/∂μy's is blurred only when y needs a gradient
    const T* map = m + b * size;  // map j of image b: map + j·B·size
    const T* planes[4] = {map, map + 2 * batch * size, map + 3 * batch * size, map + batch * size};
    const T *xb = xs + b * size, *yb = ys + b * size;
    T *gxb = need_x ? gx + b * size : nullptr, *gyb = need_y ? gy + b * size : nullptr;
    auto source = [&](int64_t r, const T** lines) {
      for (int p = 0; p < 4; ++p) lines[p] = planes[p] + r * row;
    };
    auto sink = [&](int64_t o, T* const* blurred) {
      const T *__restrict__ by_mean_x = blurred[0], *__restrict__ by_sq = blurred[1],
              *__restrict__ by_xy = blurred[2], *__restrict__ by_mean_y = blurred[3];
      const T *__restrict__ xr = xb + o * row, *__restrict__ yr = yb + o * row;
      if (need_x) {
        T* __restrict__ g = gxb + o * row;
        for (int64_t i = 0; i < row; ++i) g[i] = twice * (by_mean_x[i] - by_sq[i] * xr[i] + by_xy[i] * yr[i]);
      }
      if (need_y) {
        T* __restrict__ g = gyb + o * row;
        for (int64_t i = 0; i < row; ++i) g[i] = twice * (by_mean_y[i] - by_sq[i] * yr[i] + by_xy[i] * xr[i]);
      }
    };
    blur_rows<T>(need_y ? 4 : 3, height, width, channels, w, window.size(0), first, last, source, sink);
  });
}

// grad_x, grad_y [B, H, W, C] (where needed) of scale · Σ S (scale: a float64 CPU scalar), from ssim_forward's
// maps.
void ssim_backward(const at::Tensor& x, const at::Tensor& y, const at::Tensor& window, const at::Tensor& maps,
                   const at::Tensor& scale_tensor, bool need_x, bool need_y, at::Tensor grad_x, at::Tensor grad_y) {
  check(x, y, window);
  TORCH_CHECK(scale_tensor.numel() == 1 && scale_tensor.scalar_type() == at::kDouble && scale_tensor.device().is_cpu(),
              "ssim: scale, a float64 CPU scalar");
  const double scale = *scale_tensor.data_ptr<double>();
  TORCH_CHECK(!need_x || (grad_x.is_contiguous() && grad_x.sizes() == x.sizes()), "ssim: grad_x like x");
  TORCH_CHECK(!need_y || (grad_y.is_contiguous() && grad_y.sizes() == y.sizes()), "ssim: grad_y like y");
  if (x.scalar_type() == at::kFloat) {
    backward_typed<float>(x, y, window, maps, scale, need_x, need_y, grad_x, grad_y);
  } else {
    backward_typed<double>(x, y, window, maps, scale, need_x, need_y, grad_x, grad_y);
  }
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(momentum_gs, m) {
  m.def("ssim_forward(Tensor x, Tensor y, Tensor window, float c1, float c2, Tensor(a!) maps) -> float",
        &ssim_forward);
  m.def("ssim_backward(Tensor x, Tensor y, Tensor window, Tensor maps, Tensor scale, bool need_x, bool need_y, "
        "Tensor(a!) grad_x, Tensor(b!) grad_y) -> ()", &ssim_backward);
}
