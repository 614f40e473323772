// The kept neural Gaussians of the visible anchors (the last step of neural.generate_gaussians), forward and
// backward, on the CPU. neural.generate_gaussians's PyTorch code stays the reference.
//
// Anchor rows a = anchor_index[v] of the visible anchors v, k children each; kept [M] (ascending) indexes
// the V·k children anchor-major: child c = kept[m] is child i = c % k of visible anchor v = c / k. Per m:
//     mean    = position[a] + offset[a, i] ⊙ exp(scaling[a, 0:3])
//     scale   = exp(scaling[a, 3:6]) ⊙ sigmoid(cov[v, i, 0:3])
//     quat    = q / max(‖q‖, 1e-12),  q = cov[v, i, 3:7]      (F.normalize)
//     opacity = opacity[v, i],  colour = color[v, i]
// The backward follows the reference's autograd graph: the sums over an anchor's children are taken before
// the exponential's factor, as the broadcast's backward does, and the normalisation's backward is that of
// x / clamp_min(‖x‖, eps). Gradients of the anchors' rows go to the full [N, ...] tensors (zeros on entry,
// each visible anchor's row written by one thread), so no index_add is needed; the result does not depend on
// the number of threads.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "parallel.h"

namespace {

constexpr double kNormEps = 1e-12;  // F.normalize's eps

struct Shapes {
  int64_t n, v, k, m;
};

Shapes check_children(const at::Tensor& positions, const at::Tensor& offsets, const at::Tensor& scalings,
                      const at::Tensor& anchor_index, const at::Tensor& opacity, const at::Tensor& cov,
                      const at::Tensor& color, const at::Tensor& kept) {
  TORCH_CHECK(positions.device().is_cpu(), "children: CPU tensors only");
  const int64_t n = positions.size(0), v = opacity.size(0), k = opacity.dim() == 2 ? opacity.size(1) : 0;
  TORCH_CHECK(positions.dim() == 2 && positions.size(1) == 3 && positions.is_contiguous(),
              "children: positions [N, 3]");
  TORCH_CHECK(offsets.dim() == 3 && offsets.size(0) == n && offsets.size(1) == k && offsets.size(2) == 3 &&
              offsets.is_contiguous(), "children: offsets [N, k, 3]");
  TORCH_CHECK(scalings.dim() == 2 && scalings.size(0) == n && scalings.size(1) == 6 && scalings.is_contiguous(),
              "children: scalings [N, 6]");
  TORCH_CHECK(anchor_index.scalar_type() == at::kLong && anchor_index.dim() == 1 && anchor_index.size(0) == v &&
              anchor_index.is_contiguous(), "children: anchor_index int64 [V]");
  TORCH_CHECK(opacity.dim() == 2 && opacity.is_contiguous(), "children: opacity [V, k]");
  TORCH_CHECK(cov.dim() == 3 && cov.size(0) == v && cov.size(1) == k && cov.size(2) == 7 && cov.is_contiguous(),
              "children: cov [V, k, 7]");
  TORCH_CHECK(color.dim() == 3 && color.size(0) == v && color.size(1) == k && color.size(2) == 3 &&
              color.is_contiguous(), "children: color [V, k, 3]");
  TORCH_CHECK(kept.scalar_type() == at::kLong && kept.dim() == 1 && kept.is_contiguous(), "children: kept int64 [M]");
  const auto dtype = positions.scalar_type();
  TORCH_CHECK(offsets.scalar_type() == dtype && scalings.scalar_type() == dtype && opacity.scalar_type() == dtype &&
              cov.scalar_type() == dtype && color.scalar_type() == dtype, "children: one dtype");
  const int64_t* a = anchor_index.data_ptr<int64_t>();
  for (int64_t i = 0; i < v; ++i) TORCH_CHECK(a[i] >= 0 && a[i] < n, "children: anchor_index out of range");
  const int64_t* c = kept.data_ptr<int64_t>();
  for (int64_t i = 0; i < kept.size(0); ++i) {
    TORCH_CHECK(c[i] >= 0 && c[i] < v * k && (i == 0 || c[i] > c[i - 1]), "children: kept ascending in [0, V·k)");
  }
  return {n, v, k, kept.size(0)};
}

template <typename T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

// Runs fn(a, e_shift, e_size, first, last) for every visible anchor v (its row a = anchor_index[v]) on the
// kernels' threads (parallel.h), in chunks of anchors: e_shift and e_size are exp(scaling[a, 0:3]) and
// exp(scaling[a, 3:6]), taken once for the anchor's children, which are kept[first:last] (consecutive: kept is
// ascending).
template <typename T, typename Fn>
void for_each_anchor(const Shapes& s, const int64_t* anchor, const int64_t* children, const T* scl, Fn fn) {
  const int64_t k = s.k;
  mgs::chunks(s.v, 256, [&](int64_t begin, int64_t end) {
    int64_t m = std::lower_bound(children, children + s.m, begin * k) - children;
    for (int64_t v = begin; v < end; ++v) {
      const int64_t a = anchor[v], first = m;
      const T* sa = scl + 6 * a;
      T e_shift[3], e_size[3];
      for (int j = 0; j < 3; ++j) e_shift[j] = std::exp(sa[j]), e_size[j] = std::exp(sa[3 + j]);
      while (m < s.m && children[m] < (v + 1) * k) ++m;
      fn(a, e_shift, e_size, first, m);
    }
  });
}

template <typename T>
void forward_typed(const at::Tensor& positions, const at::Tensor& offsets, const at::Tensor& scalings,
                   const at::Tensor& anchor_index, const at::Tensor& opacity, const at::Tensor& cov,
                   const at::Tensor& color, const at::Tensor& kept, const Shapes& s, at::Tensor& means,
                   at::Tensor& quats, at::Tensor& scales, at::Tensor& opacities, at::Tensor& colors) {
  const T *pos = positions.data_ptr<T>(), *off = offsets.data_ptr<T>(), *scl = scalings.data_ptr<T>(),
          *op = opacity.data_ptr<T>(), *cv = cov.data_ptr<T>(), *col = color.data_ptr<T>();
  const int64_t *anchor = anchor_index.data_ptr<int64_t>(), *children = kept.data_ptr<int64_t>();
  T *mean = means.data_ptr<T>(), *quat = quats.data_ptr<T>(), *scale = scales.data_ptr<T>(),
    *opa = opacities.data_ptr<T>(), *rgb = colors.data_ptr<T>();
  const int64_t k = s.k;
  for_each_anchor<T>(s, anchor, children, scl, [&](int64_t a, const T* e_shift, const T* e_size, int64_t first,
                                                   int64_t last) {
    for (int64_t m = first; m < last; ++m) {
      const int64_t c = children[m], i = c % k;
      const T* q = cv + 7 * c;
      for (int j = 0; j < 3; ++j) {
        mean[3 * m + j] = pos[3 * a + j] + off[3 * (a * k + i) + j] * e_shift[j];
        scale[3 * m + j] = e_size[j] * sigmoid(q[j]);
      }
      const T norm = std::sqrt(q[3] * q[3] + q[4] * q[4] + q[5] * q[5] + q[6] * q[6]);
      const T denom = std::max(norm, T(kNormEps));
      for (int j = 0; j < 4; ++j) quat[4 * m + j] = q[3 + j] / denom;
      opa[m] = op[c];
      for (int j = 0; j < 3; ++j) rgb[3 * m + j] = col[3 * c + j];
    }
  });
}

template <typename T>
void backward_typed(const at::Tensor& offsets, const at::Tensor& scalings, const at::Tensor& anchor_index,
                    const at::Tensor& cov, const at::Tensor& kept, const Shapes& s, const at::Tensor& grad_means,
                    const at::Tensor& grad_quats, const at::Tensor& grad_scales, const at::Tensor& grad_opacities,
                    const at::Tensor& grad_colors, at::Tensor& grad_positions, at::Tensor& grad_offsets,
                    at::Tensor& grad_scalings, at::Tensor& grad_opacity, at::Tensor& grad_cov,
                    at::Tensor& grad_color) {
  const T *off = offsets.data_ptr<T>(), *scl = scalings.data_ptr<T>(), *cv = cov.data_ptr<T>();
  const T *gm = grad_means.data_ptr<T>(), *gq = grad_quats.data_ptr<T>(), *gs = grad_scales.data_ptr<T>(),
          *go = grad_opacities.data_ptr<T>(), *gc = grad_colors.data_ptr<T>();
  T *g_pos = grad_positions.data_ptr<T>(), *g_off = grad_offsets.data_ptr<T>(), *g_scl = grad_scalings.data_ptr<T>(),
    *g_op = grad_opacity.data_ptr<T>(), *g_cov = grad_cov.data_ptr<T>(), *g_col = grad_color.data_ptr<T>();
  const int64_t *anchor = anchor_index.data_ptr<int64_t>(), *children = kept.data_ptr<int64_t>();
  const int64_t k = s.k;
  for_each_anchor<T>(s, anchor, children, scl, [&](int64_t a, const T* e_shift, const T* e_size, int64_t first,
                                                   int64_t last) {
    T sum_pos[3] = {0, 0, 0}, sum_shift[3] = {0, 0, 0}, sum_size[3] = {0, 0, 0};
    for (int64_t m = first; m < last; ++m) {
      const int64_t c = children[m], i = c % k;
      const T* q = cv + 7 * c;
      T* gcv = g_cov + 7 * c;
      for (int j = 0; j < 3; ++j) {
        const T g = gm[3 * m + j];
        sum_pos[j] += g;
        sum_shift[j] += g * off[3 * (a * k + i) + j];
        g_off[3 * (a * k + i) + j] = g * e_shift[j];
        const T sig = sigmoid(q[j]), h = gs[3 * m + j];
        sum_size[j] += h * sig;
        gcv[j] = h * e_size[j] * ((T(1) - sig) * sig);
      }
      // y = x / d, d = max(‖x‖, eps): ∂/∂x = g / d − [‖x‖ >= eps] x (g·x) / (d² ‖x‖)
      const T norm = std::sqrt(q[3] * q[3] + q[4] * q[4] + q[5] * q[5] + q[6] * q[6]);
      const T denom = std::max(norm, T(kNormEps));
      const T* g4 = gq + 4 * m;
      const T dot = g4[0] * q[3] + g4[1] * q[4] + g4[2] * q[5] + g4[3] * q[6];
      const T through_norm = norm >= T(kNormEps) ? -dot / (denom * denom) / norm : T(0);
      for (int j = 0; j < 4; ++j) gcv[3 + j] = g4[j] / denom + through_norm * q[3 + j];
      g_op[c] = go[m];
      for (int j = 0; j < 3; ++j) g_col[3 * c + j] = gc[3 * m + j];
    }
    for (int j = 0; j < 3; ++j) {  // each anchor row is written by one thread
      g_pos[3 * a + j] += sum_pos[j];
      g_scl[6 * a + j] += sum_shift[j] * e_shift[j];
      g_scl[6 * a + 3 + j] += sum_size[j] * e_size[j];
    }
  });
}

// means [M, 3], quats [M, 4], scales [M, 3], opacities [M], colors [M, 3] (written) from the inputs above.
void children_forward(const at::Tensor& positions, const at::Tensor& offsets, const at::Tensor& scalings,
                      const at::Tensor& anchor_index, const at::Tensor& opacity, const at::Tensor& cov,
                      const at::Tensor& color, const at::Tensor& kept, at::Tensor means, at::Tensor quats,
                      at::Tensor scales, at::Tensor opacities, at::Tensor colors) {
  const Shapes s = check_children(positions, offsets, scalings, anchor_index, opacity, cov, color, kept);
  for (const at::Tensor* t : {&means, &quats, &scales, &opacities, &colors}) {
    TORCH_CHECK(t->is_contiguous() && t->scalar_type() == positions.scalar_type() && t->size(0) == s.m,
                "children: outputs [M, ...] contiguous");
  }
  if (positions.scalar_type() == at::kFloat) {
    forward_typed<float>(positions, offsets, scalings, anchor_index, opacity, cov, color, kept, s, means, quats,
                         scales, opacities, colors);
  } else {
    TORCH_CHECK(positions.scalar_type() == at::kDouble, "children: float32 or float64");
    forward_typed<double>(positions, offsets, scalings, anchor_index, opacity, cov, color, kept, s, means, quats,
                          scales, opacities, colors);
  }
}

// The gradients of positions [N, 3], offsets [N, k, 3], scalings [N, 6], opacity [V, k], cov [V, k, 7] and
// color [V, k, 3] (zeros on entry) from those of the five outputs.
void children_backward(const at::Tensor& positions, const at::Tensor& offsets, const at::Tensor& scalings,
                       const at::Tensor& anchor_index, const at::Tensor& opacity, const at::Tensor& cov,
                       const at::Tensor& color, const at::Tensor& kept, const at::Tensor& grad_means,
                       const at::Tensor& grad_quats, const at::Tensor& grad_scales, const at::Tensor& grad_opacities,
                       const at::Tensor& grad_colors, at::Tensor grad_positions, at::Tensor grad_offsets,
                       at::Tensor grad_scalings, at::Tensor grad_opacity, at::Tensor grad_cov, at::Tensor grad_color) {
  const Shapes s = check_children(positions, offsets, scalings, anchor_index, opacity, cov, color, kept);
  for (const at::Tensor* t : {&grad_means, &grad_quats, &grad_scales, &grad_opacities, &grad_colors}) {
    TORCH_CHECK(t->is_contiguous() && t->scalar_type() == positions.scalar_type() && t->size(0) == s.m,
                "children: output gradients [M, ...] contiguous");
  }
  TORCH_CHECK(grad_positions.sizes() == positions.sizes() && grad_offsets.sizes() == offsets.sizes() &&
              grad_scalings.sizes() == scalings.sizes() && grad_opacity.sizes() == opacity.sizes() &&
              grad_cov.sizes() == cov.sizes() && grad_color.sizes() == color.sizes(), "children: input gradients");
  if (positions.scalar_type() == at::kFloat) {
    backward_typed<float>(offsets, scalings, anchor_index, cov, kept, s, grad_means, grad_quats, grad_scales,
                          grad_opacities, grad_colors, grad_positions, grad_offsets, grad_scalings, grad_opacity,
                          grad_cov, grad_color);
  } else {
    TORCH_CHECK(positions.scalar_type() == at::kDouble, "children: float32 or float64");
    backward_typed<double>(offsets, scalings, anchor_index, cov, kept, s, grad_means, grad_quats, grad_scales,
                           grad_opacities, grad_colors, grad_positions, grad_offsets, grad_scalings, grad_opacity,
                           grad_cov, grad_color);
  }
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(momentum_gs, m) {
  m.def("children_forward(Tensor positions, Tensor offsets, Tensor scalings, Tensor anchor_index, Tensor opacity, "
        "Tensor cov, Tensor color, Tensor kept, Tensor(a!) means, Tensor(b!) quats, Tensor(c!) scales, "
        "Tensor(d!) opacities, Tensor(e!) colors) -> ()", &children_forward);
  m.def("children_backward(Tensor positions, Tensor offsets, Tensor scalings, Tensor anchor_index, "
        "Tensor opacity, Tensor cov, Tensor color, Tensor kept, Tensor grad_means, Tensor grad_quats, "
        "Tensor grad_scales, Tensor grad_opacities, Tensor grad_colors, Tensor(a!) grad_positions, "
        "Tensor(b!) grad_offsets, Tensor(c!) grad_scalings, Tensor(d!) grad_opacity, Tensor(e!) grad_cov, "
        "Tensor(f!) grad_color) -> ()", &children_backward);
}
