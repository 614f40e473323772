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
// filtered along x by shifting it C values per tap, so no transposes are needed. Each image's work is one
// thread's; the sum of S is taken in double in pixel order: the same bits at any thread count.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "simd.h"

namespace {

using mgs::load;
using mgs::store;

// Blurs ``planes`` images of [H, W·C] values, ``in[p]`` each, into ``out`` (plane p at p·H·W·C; each row
// shifted by C values per tap along x, then rows combined along y), zero padding; ``tmp`` holds one image.
// Every output value is the sum, from 0 and in tap order, of the taps that fall inside the image, kept in a
// register (a vector of outputs at a time) and stored once.
template <typename T>
void blur(const T* const* in, T* out, int64_t planes, int64_t height, int64_t width, int64_t channels, const T* window,
          int64_t taps, std::vector<T>& tmp) {
  using V = typename mgs::Simd<T>::V;
  constexpr int64_t lanes = mgs::Simd<T>::lanes;
  const int64_t row = width * channels, half = taps / 2, size = height * row, reach = half * channels;
  tmp.resize(size);
  // along x: positions [reach, row − reach) have every tap inside the row
  const int64_t inner_end = reach + std::max<int64_t>(0, row - 2 * reach) / lanes * lanes;
  auto edge_x = [&](const T* line, T* acc, int64_t i) {
    T sum = 0;
    for (int64_t k = 0; k < taps; ++k) {
      const int64_t j = i + (k - half) * channels;
      if (j >= 0 && j < row) sum += window[k] * line[j];
    }
    acc[i] = sum;
  };
  for (int64_t p = 0; p < planes; ++p) {
    const T* src = in[p];
    T* dst = out + p * size;
    for (int64_t y = 0; y < height; ++y) {
      const T* line = src + y * row;
      T* acc = tmp.data() + y * row;
      for (int64_t i = 0; i < std::min(reach, row); ++i) edge_x(line, acc, i);
      for (int64_t i = reach; i < inner_end; i += lanes) {
        V sum{};
        for (int64_t k = 0; k < taps; ++k) sum += window[k] * load<V>(line + i + (k - half) * channels);
        store(acc + i, sum);
      }
      for (int64_t i = std::max(inner_end, std::min(reach, row)); i < row; ++i) edge_x(line, acc, i);
    }
    for (int64_t y = 0; y < height; ++y) {  // along y: the taps whose row is inside the image
      const int64_t first = std::max<int64_t>(0, half - y), last = std::min<int64_t>(taps, height + half - y);
      const T* lines = tmp.data() + (y - half) * row;  // row of tap k: lines + k·row
      T* acc = dst + y * row;
      int64_t i = 0;
      for (; i + lanes <= row; i += lanes) {
        V sum{};
        for (int64_t k = first; k < last; ++k) sum += window[k] * load<V>(lines + k * row + i);
        store(acc + i, sum);
      }
      for (; i < row; ++i) {
        T sum = 0;
        for (int64_t k = first; k < last; ++k) sum += window[k] * lines[k * row + i];
        acc[i] = sum;
      }
    }
  }
}

// Per image b: the moments, S, and the four maps the backward blurs (∂S/∂μx and ∂S/∂μy halved, S / B2,
// A1 / D) into maps [4, B, H·W·C]; returns Σ S over the image in double.
template <typename T>
double forward_image(const T* x, const T* y, const T* window, int64_t taps, int64_t height, int64_t width,
                     int64_t channels, T c1, T c2, T* maps, int64_t map_stride) {
  const int64_t size = height * width * channels;
  thread_local std::vector<T> stacked, moments, tmp;  // reused: fresh pages cost more than the work
  stacked.resize(4 * size), moments.resize(4 * size);
  for (int64_t i = 0; i < size; ++i) {
    stacked[i] = x[i], stacked[size + i] = y[i];
    stacked[2 * size + i] = x[i] * x[i] + y[i] * y[i], stacked[3 * size + i] = x[i] * y[i];
  }
  const T* planes[4] = {stacked.data(), stacked.data() + size, stacked.data() + 2 * size, stacked.data() + 3 * size};
  blur(planes, moments.data(), 4, height, width, channels, window, taps, tmp);
  const T *__restrict__ mu_x = moments.data(), *__restrict__ mu_y = mu_x + size, *__restrict__ e_sq = mu_y + size,
          *__restrict__ e_xy = e_sq + size;
  T *__restrict__ values = stacked.data();  // S per pixel and channel (the stacked inputs are no longer needed)
  T *__restrict__ map_x = maps, *__restrict__ map_y = maps + map_stride, *__restrict__ map_sq = maps + 2 * map_stride,
    *__restrict__ map_xy = maps + 3 * map_stride;
  for (int64_t i = 0; i < size; ++i) {
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
  double sums[4] = {0, 0, 0, 0};  // four running sums in double, added in a fixed order
  int64_t i = 0;
  for (; i + 4 <= size; i += 4) {
    for (int j = 0; j < 4; ++j) sums[j] += double(values[i + j]);
  }
  for (; i < size; ++i) sums[0] += double(values[i]);
  return (sums[0] + sums[1]) + (sums[2] + sums[3]);
}

void check(const at::Tensor& x, const at::Tensor& y, const at::Tensor& window) {
  TORCH_CHECK(x.device().is_cpu(), "ssim: CPU tensors only");
  TORCH_CHECK(x.dim() == 4 && x.is_contiguous() && y.sizes() == x.sizes() && y.is_contiguous(),
              "ssim: x, y [B, H, W, C] contiguous");
  TORCH_CHECK(window.dim() == 1 && window.size(0) % 2 == 1 && window.is_contiguous(), "ssim: odd window [K]");
  TORCH_CHECK(y.scalar_type() == x.scalar_type() && window.scalar_type() == x.scalar_type(), "ssim: one dtype");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, "ssim: float32 or float64");
}

template <typename T>
double forward_typed(const at::Tensor& x, const at::Tensor& y, const at::Tensor& window, double c1, double c2,
                     at::Tensor& maps) {
  const int64_t batch = x.size(0), height = x.size(1), width = x.size(2), channels = x.size(3);
  const int64_t size = height * width * channels;
  std::vector<double> totals(batch);
  const T *xs = x.data_ptr<T>(), *ys = y.data_ptr<T>(), *w = window.data_ptr<T>();
  T* m = maps.data_ptr<T>();
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      totals[b] = forward_image<T>(xs + b * size, ys + b * size, w, window.size(0), height, width, channels,
                                   T(c1), T(c2), m + b * size, batch * size);
    }
  });
  double total = 0;
  for (const double t : totals) total += t;
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
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<T> blurred, tmp;  // reused: fresh pages cost more than the work
    blurred.resize(4 * size);
    for (int64_t b = begin; b < end; ++b) {
      // the maps are read where they are; ∂S/∂μy's is blurred only when y needs a gradient
      const T* map = m + b * size;  // map j of image b: map + j·B·size
      const T* planes[4] = {map, map + 2 * batch * size, map + 3 * batch * size, map + batch * size};
      blur(planes, blurred.data(), need_y ? 4 : 3, height, width, channels, w, window.size(0), tmp);
      const T *by_mean_x = blurred.data(), *by_sq = by_mean_x + size, *by_xy = by_sq + size,
              *by_mean_y = by_xy + size, *xb = xs + b * size, *yb = ys + b * size;
      if (need_x) {
        T* g = gx + b * size;
        for (int64_t i = 0; i < size; ++i) g[i] = twice * (by_mean_x[i] - by_sq[i] * xb[i] + by_xy[i] * yb[i]);
      }
      if (need_y) {
        T* g = gy + b * size;
        for (int64_t i = 0; i < size; ++i) g[i] = twice * (by_mean_y[i] - by_sq[i] * yb[i] + by_xy[i] * xb[i]);
      }
    }
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
