// EWA projection of 3D Gaussians into a pinhole camera (forward and backward) and the Gaussian × tile lists,
// on the CPU, one loop per Gaussian instead of ~60 small tensor operations.
//
// The semantics are those of momentum_gs/render/projection.py (_project_torch) and render/tiles.py
// (_intersect_tiles_torch), which stay the reference: the same clamped EWA Jacobian, Σ₂d = (J W R S)(J W R S)ᵀ
// + eps2d·I, conic = adj(Σ₂d) / det, the same culling and radii; the tile lists sorted by tile, then by depth
// (ties by index, as a stable argsort), with the same box per Gaussian. The backward is the chain rule of the
// reference's autograd graph written out per Gaussian (including its where/clamp branches), so gradients
// agree to rounding. Per-Gaussian work runs on the kernels' threads (parallel.h); every output element is written by
// one Gaussian's iteration, so results do not depend on the thread count.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <utility>
#include <vector>

#include "parallel.h"

namespace {

constexpr int64_t kGrain = 1024;  // Gaussians per parallel chunk

// The camera and the projection settings, in the compute type.
template <typename T>
struct Camera {
  T R[9], t[3], fx, fy, cx, cy, width, height, near, far, eps2d;
  T lo_x, hi_x, lo_y, hi_y;  // the clamp of the ray slopes x/z, y/z used by the Jacobian
  T reach;                   // Mahalanobis distance of the on-image test (ALPHA_REACH)
  bool ortho;                // parallel rays: pixel (fx x + cx, fy y + cy), J = [[fx, 0, 0], [0, fy, 0]]

  Camera(const at::Tensor& world_to_cam, const at::Tensor& K, c10::ArrayRef<double> settings) {
    const T* w = world_to_cam.data_ptr<T>();
    const T* k = K.data_ptr<T>();
    for (int i = 0; i < 3; ++i) {
      for (int j = 0; j < 3; ++j) R[3 * i + j] = w[4 * i + j];
      t[i] = w[4 * i + 3];
    }
    fx = k[0], fy = k[4], cx = k[2], cy = k[5];
    width = T(settings[0]), height = T(settings[1]), near = T(settings[2]), far = T(settings[3]);
    eps2d = T(settings[4]), reach = T(settings[6]);
    ortho = settings.size() > 7 && settings[7] != 0.0;
    const T margin = T(settings[5]);  // FRUSTUM_MARGIN
    const T margin_x = margin * T(0.5) * width / fx, margin_y = margin * T(0.5) * height / fy;
    lo_x = -(cx / fx + margin_x), hi_x = (width - cx) / fx + margin_x;
    lo_y = -(cy / fy + margin_y), hi_y = (height - cy) / fy + margin_y;
  }
};

// Everything the forward computes for one Gaussian, kept for its backward.
template <typename T>
struct Projected {
  T p[3], z_safe, u, v;  // camera point, depth used for division, p.x / z_safe, p.y / z_safe
  bool in_range, clamp_u, clamp_v;  // clamp_*: the ray slope was outside the clamp (no gradient through it)
  T q[4], norm;        // normalised quaternion (w, x, y, z) and the norm it was divided by
  T M[9];              // W · R(q), row-major
  T J[6];              // the 2 × 3 Jacobian, row-major
  T JM[6];             // J · M
  T H[6];              // J · M · diag(scales)
  T a, b, c, det, det_safe;
  bool valid;
};

template <typename T>
void perspective_jacobian(const Camera<T>& cam, Projected<T>& s) {
  s.u = s.p[0] / s.z_safe, s.v = s.p[1] / s.z_safe;
  const T su = std::min(std::max(s.u, cam.lo_x), cam.hi_x), sv = std::min(std::max(s.v, cam.lo_y), cam.hi_y);
  s.clamp_u = !(s.u >= cam.lo_x && s.u <= cam.hi_x), s.clamp_v = !(s.v >= cam.lo_y && s.v <= cam.hi_y);
  s.J[0] = cam.fx / s.z_safe, s.J[1] = 0, s.J[2] = -cam.fx * su / s.z_safe;
  s.J[3] = 0, s.J[4] = cam.fy / s.z_safe, s.J[5] = -cam.fy * sv / s.z_safe;
}

template <typename T>
void finish_projection(const Camera<T>& cam, const T* quat, const T* scale, Projected<T>& s) {
  const T* R = cam.R;
  s.norm = std::max(std::sqrt(quat[0] * quat[0] + quat[1] * quat[1] + quat[2] * quat[2] + quat[3] * quat[3]),
                    T(1e-12));
  for (int i = 0; i < 4; ++i) s.q[i] = quat[i] / s.norm;
  const T w = s.q[0], x = s.q[1], y = s.q[2], zq = s.q[3];
  const T Rq[9] = {1 - 2 * (y * y + zq * zq), 2 * (x * y - w * zq), 2 * (x * zq + w * y),
                   2 * (x * y + w * zq), 1 - 2 * (x * x + zq * zq), 2 * (y * zq - w * x),
                   2 * (x * zq - w * y), 2 * (y * zq + w * x), 1 - 2 * (x * x + y * y)};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) s.M[3 * i + j] = R[3 * i] * Rq[j] + R[3 * i + 1] * Rq[3 + j] + R[3 * i + 2] * Rq[6 + j];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) {
      s.JM[3 * i + j] = s.J[3 * i] * s.M[j] + s.J[3 * i + 1] * s.M[3 + j] + s.J[3 * i + 2] * s.M[6 + j];
      s.H[3 * i + j] = s.JM[3 * i + j] * scale[j];
    }
  s.a = s.H[0] * s.H[0] + s.H[1] * s.H[1] + s.H[2] * s.H[2] + cam.eps2d;
  s.b = s.H[0] * s.H[3] + s.H[1] * s.H[4] + s.H[2] * s.H[5];
  s.c = s.H[3] * s.H[3] + s.H[4] * s.H[4] + s.H[5] * s.H[5] + cam.eps2d;
  s.det = s.a * s.c - s.b * s.b;
  s.valid = s.in_range && s.det > 0;
  s.det_safe = s.valid ? s.det : T(1);
}

template <typename T>
void project_one(const Camera<T>& cam, const T* mean, const T* quat, const T* scale, Projected<T>& s) {
  const T* R = cam.R;
  for (int i = 0; i < 3; ++i) s.p[i] = R[3 * i] * mean[0] + R[3 * i + 1] * mean[1] + R[3 * i + 2] * mean[2] + cam.t[i];
  const T z = s.p[2];
  s.in_range = z > cam.near && z < cam.far;
  s.z_safe = s.in_range ? z : T(1);
  if (cam.ortho) {  // forward only: project_backward refuses this camera
    s.u = s.p[0], s.v = s.p[1], s.clamp_u = s.clamp_v = false;
    s.J[0] = cam.fx, s.J[1] = 0, s.J[2] = 0, s.J[3] = 0, s.J[4] = cam.fy, s.J[5] = 0;
  } else {
    perspective_jacobian(cam, s);
  }
  finish_projection(cam, quat, scale, s);
}

template <typename T>
void forward_typed(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                   const Camera<T>& cam, at::Tensor& means2d, at::Tensor& covars2d, at::Tensor& conics,
                   at::Tensor& depths, at::Tensor& radii) {
  const T *m = means.data_ptr<T>(), *q = quats.data_ptr<T>(), *sc = scales.data_ptr<T>();
  T *m2 = means2d.data_ptr<T>(), *cov = covars2d.data_ptr<T>(), *con = conics.data_ptr<T>(),
    *dep = depths.data_ptr<T>();
  int32_t* rad = radii.data_ptr<int32_t>();
  mgs::chunks(means.size(0), kGrain, [&](int64_t begin, int64_t end) {
    Projected<T> s;
    for (int64_t n = begin; n < end; ++n) {
      project_one(cam, m + 3 * n, q + 4 * n, sc + 3 * n, s);
      const T x = s.u * cam.fx + cam.cx, y = s.v * cam.fy + cam.cy;
      m2[2 * n] = x, m2[2 * n + 1] = y;
      cov[4 * n] = s.a, cov[4 * n + 1] = s.b, cov[4 * n + 2] = s.b, cov[4 * n + 3] = s.c;
      con[3 * n] = s.c / s.det_safe, con[3 * n + 1] = -s.b / s.det_safe, con[3 * n + 2] = s.a / s.det_safe;
      dep[n] = s.p[2];
      const T mid = T(0.5) * (s.a + s.c);
      const T lambda_max = mid + std::sqrt(std::max(mid * mid - s.det, T(0)));
      const T radius = std::min(std::ceil(T(3) * std::sqrt(lambda_max)), T(2147483647.0));  // as RADIUS_MAX
      const T rx = cam.reach * std::sqrt(s.a), ry = cam.reach * std::sqrt(s.c);
      const bool on_image = (x + rx > 0) && (x - rx < cam.width) && (y + ry > 0) && (y - ry < cam.height);
      rad[n] = (s.valid && on_image) ? static_cast<int32_t>(radius) : 0;
    }
  });
}

// d/d(unit quaternion) of Σ G ⊙ R(q), G row-major [3, 3].
template <typename T>
void rotation_backward(const T* q, const T* G, T* out) {
  const T w = q[0], x = q[1], y = q[2], z = q[3];
  out[0] = 2 * (-z * G[1] + y * G[2] + z * G[3] - x * G[5] - y * G[6] + x * G[7]);
  out[1] = 2 * (y * G[1] + z * G[2] + y * G[3] - 2 * x * G[4] - w * G[5] + z * G[6] + w * G[7] - 2 * x * G[8]);
  out[2] = 2 * (-2 * y * G[0] + x * G[1] + w * G[2] + x * G[3] + z * G[5] - w * G[6] + z * G[7] - 2 * y * G[8]);
  out[3] = 2 * (-2 * z * G[0] - w * G[1] + x * G[2] + w * G[3] - 2 * z * G[4] + y * G[5] + x * G[6] + y * G[7]);
}

template <typename T>
void backward_typed(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                    const Camera<T>& cam, const at::Tensor& grad_means2d, const at::Tensor& grad_conics,
                    const at::Tensor& grad_depths, at::Tensor& grad_means, at::Tensor& grad_quats,
                    at::Tensor& grad_scales) {
  const T *m = means.data_ptr<T>(), *q = quats.data_ptr<T>(), *sc = scales.data_ptr<T>();
  const T *gm2 = grad_means2d.data_ptr<T>(), *gcon = grad_conics.data_ptr<T>(), *gdep = grad_depths.data_ptr<T>();
  T *gm = grad_means.data_ptr<T>(), *gq = grad_quats.data_ptr<T>(), *gs = grad_scales.data_ptr<T>();
  mgs::chunks(means.size(0), kGrain, [&](int64_t begin, int64_t end) {
    Projected<T> s;
    for (int64_t n = begin; n < end; ++n) {
      project_one(cam, m + 3 * n, q + 4 * n, sc + 3 * n, s);
      // conic = (c, −b, a) / det_safe, det_safe = a c − b² where valid (else the constant 1)
      const T g0 = gcon[3 * n], g1 = gcon[3 * n + 1], g2 = gcon[3 * n + 2], D = s.det_safe;
      T ga = g2 / D, gb = -g1 / D, gc = g0 / D;
      if (s.valid) {
        const T g_det = -(g0 * s.c - g1 * s.b + g2 * s.a) / (D * D);
        ga += g_det * s.c, gc += g_det * s.a, gb -= 2 * s.b * g_det;
      }
      // a = H₀·H₀ + eps, b = H₀·H₁, c = H₁·H₁ + eps
      T GH[6];
      for (int j = 0; j < 3; ++j) {
        GH[j] = 2 * ga * s.H[j] + gb * s.H[3 + j];
        GH[3 + j] = 2 * gc * s.H[3 + j] + gb * s.H[j];
      }
      // H = JM · diag(scales)
      T GJM[6];
      for (int j = 0; j < 3; ++j) {
        gs[3 * n + j] = GH[j] * s.JM[j] + GH[3 + j] * s.JM[3 + j];
        GJM[j] = GH[j] * sc[3 * n + j], GJM[3 + j] = GH[3 + j] * sc[3 * n + j];
      }
      // JM = J · M: G_J = G_JM · Mᵀ, G_M = Jᵀ · G_JM, then M = W · R(q): G_R = Wᵀ · G_M
      T GJ[6], GM[9], GR[9];
      for (int i = 0; i < 2; ++i)
        for (int k = 0; k < 3; ++k)
          GJ[3 * i + k] = GJM[3 * i] * s.M[3 * k] + GJM[3 * i + 1] * s.M[3 * k + 1] + GJM[3 * i + 2] * s.M[3 * k + 2];
      for (int k = 0; k < 3; ++k)
        for (int j = 0; j < 3; ++j) GM[3 * k + j] = s.J[k] * GJM[j] + s.J[3 + k] * GJM[3 + j];
      for (int l = 0; l < 3; ++l)
        for (int j = 0; j < 3; ++j)
          GR[3 * l + j] = cam.R[l] * GM[j] + cam.R[3 + l] * GM[3 + j] + cam.R[6 + l] * GM[6 + j];
      T g_unit[4];
      rotation_backward(s.q, GR, g_unit);
      // q̂ = q / max(|q|, 1e-12)
      T* gq_n = gq + 4 * n;
      if (s.norm > T(1e-12)) {
        const T along = g_unit[0] * s.q[0] + g_unit[1] * s.q[1] + g_unit[2] * s.q[2] + g_unit[3] * s.q[3];
        for (int i = 0; i < 4; ++i) gq_n[i] = (g_unit[i] - s.q[i] * along) / s.norm;
      } else {
        for (int i = 0; i < 4; ++i) gq_n[i] = g_unit[i] / s.norm;
      }
      // J = [[fx/z, 0, −fx·su/z], [0, fy/z, −fy·sv/z]], su = clamp(u), u = p.x / z (the same for v)
      const T z = s.z_safe;
      const T su = std::min(std::max(s.u, cam.lo_x), cam.hi_x), sv = std::min(std::max(s.v, cam.lo_y), cam.hi_y);
      T g_z = (-GJ[0] * cam.fx + GJ[2] * cam.fx * su - GJ[4] * cam.fy + GJ[5] * cam.fy * sv) / (z * z);
      T g_u = gm2[2 * n] * cam.fx, g_v = gm2[2 * n + 1] * cam.fy;  // means2d = (u fx + cx, v fy + cy)
      if (!s.clamp_u) g_u += -GJ[2] * cam.fx / z;
      if (!s.clamp_v) g_v += -GJ[5] * cam.fy / z;
      const T gp[3] = {g_u / z, g_v / z,
                       gdep[n] + (s.in_range ? g_z - (g_u * s.p[0] + g_v * s.p[1]) / (z * z) : T(0))};
      for (int j = 0; j < 3; ++j) gm[3 * n + j] = cam.R[j] * gp[0] + cam.R[3 + j] * gp[1] + cam.R[6 + j] * gp[2];
    }
  });
}

void check_projection(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                      const at::Tensor& world_to_cam, const at::Tensor& K) {
  const int64_t n = means.size(0);
  TORCH_CHECK(means.device().is_cpu(), "project: CPU tensors only");
  TORCH_CHECK(means.dim() == 2 && means.size(1) == 3 && means.is_contiguous(), "project: means [N, 3]");
  TORCH_CHECK(quats.dim() == 2 && quats.size(0) == n && quats.size(1) == 4 && quats.is_contiguous(),
              "project: quats [N, 4]");
  TORCH_CHECK(scales.dim() == 2 && scales.size(0) == n && scales.size(1) == 3 && scales.is_contiguous(),
              "project: scales [N, 3]");
  TORCH_CHECK(world_to_cam.numel() == 16 && world_to_cam.is_contiguous() && K.numel() == 9 && K.is_contiguous(),
              "project: world_to_cam [4, 4], K [3, 3]");
  const auto type = means.scalar_type();
  TORCH_CHECK(quats.scalar_type() == type && scales.scalar_type() == type && world_to_cam.scalar_type() == type &&
              K.scalar_type() == type, "project: one dtype");
  TORCH_CHECK(type == at::kFloat || type == at::kDouble, "project: float32 or float64");
}

// settings: width, height, near, far, eps2d, FRUSTUM_MARGIN, ALPHA_REACH[, orthographic (0 or 1)].
// Outputs (allocated by the caller): means2d [N, 2], covars2d [N, 2, 2], conics [N, 3], depths [N], radii int32 [N].
void project_forward(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                     const at::Tensor& world_to_cam, const at::Tensor& K, c10::ArrayRef<double> settings,
                     at::Tensor means2d, at::Tensor covars2d, at::Tensor conics, at::Tensor depths, at::Tensor radii) {
  check_projection(means, quats, scales, world_to_cam, K);
  TORCH_CHECK(radii.scalar_type() == at::kInt, "project: radii int32");
  if (means.scalar_type() == at::kFloat) {
    forward_typed<float>(means, quats, scales, Camera<float>(world_to_cam, K, settings), means2d, covars2d, conics,
                         depths, radii);
  } else {
    forward_typed<double>(means, quats, scales, Camera<double>(world_to_cam, K, settings), means2d, covars2d,
                          conics, depths, radii);
  }
}

// grad_means [N, 3], grad_quats [N, 4], grad_scales [N, 3] (written, not accumulated) from the gradients of
// means2d [N, 2], conics [N, 3] and depths [N].
void project_backward(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                      const at::Tensor& world_to_cam, const at::Tensor& K, c10::ArrayRef<double> settings,
                      const at::Tensor& grad_means2d, const at::Tensor& grad_conics, const at::Tensor& grad_depths,
                      at::Tensor grad_means, at::Tensor grad_quats, at::Tensor grad_scales) {
  check_projection(means, quats, scales, world_to_cam, K);
  TORCH_CHECK(!(settings.size() > 7 && settings[7] != 0.0), "project: an orthographic camera is forward only");
  TORCH_CHECK(grad_means2d.is_contiguous() && grad_conics.is_contiguous() && grad_depths.is_contiguous(),
              "project: output gradients contiguous");
  if (means.scalar_type() == at::kFloat) {
    backward_typed<float>(means, quats, scales, Camera<float>(world_to_cam, K, settings), grad_means2d, grad_conics,
                          grad_depths, grad_means, grad_quats, grad_scales);
  } else {
    backward_typed<double>(means, quats, scales, Camera<double>(world_to_cam, K, settings), grad_means2d,
                           grad_conics, grad_depths, grad_means, grad_quats, grad_scales);
  }
}

// Keys whose unsigned order is the order of the floats (negative ones bit-flipped, positive ones with the
// sign bit set; −0 taken as +0), for a radix sort.
inline uint32_t sort_key(float v) {
  if (v == 0) v = 0;
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}
inline uint64_t sort_key(double v) {
  if (v == 0) v = 0;
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  return (bits & 0x8000000000000000ull) ? ~bits : (bits | 0x8000000000000000ull);
}

// ids sorted by depth, stably (equal depths keep their order): a least-significant-digit radix sort.
template <typename T>
void sort_by_depth(std::vector<int64_t>& ids, const T* depths) {
  using Key = decltype(sort_key(T{}));
  constexpr int kBits = 11, kBuckets = 1 << kBits;
  const size_t n = ids.size();
  std::vector<Key> keys(n), keys_tmp(n);
  std::vector<int64_t> ids_tmp(n);
  for (size_t i = 0; i < n; ++i) keys[i] = sort_key(depths[ids[i]]);
  std::vector<size_t> count(kBuckets);
  for (int shift = 0; shift < int(8 * sizeof(Key)); shift += kBits) {
    std::fill(count.begin(), count.end(), 0);
    for (size_t i = 0; i < n; ++i) ++count[(keys[i] >> shift) & (kBuckets - 1)];
    if (count[(keys[0] >> shift) & (kBuckets - 1)] == n) continue;  // one digit everywhere: nothing moves
    size_t total = 0;
    for (auto& c : count) total += std::exchange(c, total);
    for (size_t i = 0; i < n; ++i) {
      const size_t at = count[(keys[i] >> shift) & (kBuckets - 1)]++;
      keys_tmp[at] = keys[i], ids_tmp[at] = ids[i];
    }
    keys.swap(keys_tmp), ids.swap(ids_tmp);
  }
}

// A Gaussian's tile box: tiles [x0, x0 + w) × [y0, y0 + h), empty when its extent is 0.
struct Box {
  int64_t x0, y0, w, h;
};

template <typename T>
int64_t tile_edge(T coordinate, int64_t limit) {  // clamped to [0, limit]; NaN -> 0
  if (!(coordinate >= 0)) return 0;
  return coordinate > T(limit) ? limit : static_cast<int64_t>(coordinate);
}

template <typename T>
std::tuple<at::Tensor, at::Tensor, at::Tensor> intersect_typed(const at::Tensor& means2d, const at::Tensor& extents,
                                                               const at::Tensor& depths, int64_t tiles_x,
                                                               int64_t tiles_y, int64_t tile_size) {
  const int64_t n = means2d.size(0), num_tiles = tiles_x * tiles_y;
  const T *m = means2d.data_ptr<T>(), *e = extents.data_ptr<T>(), *d = depths.data_ptr<T>();
  const T size = T(tile_size);
  std::vector<Box> boxes(n);
  mgs::chunks(n, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      Box& b = boxes[i];
      b = {0, 0, 0, 0};
      if (!(e[2 * i] > 0 && e[2 * i + 1] > 0)) continue;
      b.x0 = tile_edge(std::floor((m[2 * i] - e[2 * i]) / size), tiles_x);
      b.y0 = tile_edge(std::floor((m[2 * i + 1] - e[2 * i + 1]) / size), tiles_y);
      b.w = tile_edge(std::ceil((m[2 * i] + e[2 * i]) / size), tiles_x) - b.x0;
      b.h = tile_edge(std::ceil((m[2 * i + 1] + e[2 * i + 1]) / size), tiles_y) - b.y0;
      if (b.w <= 0 || b.h <= 0) b.w = b.h = 0;
    }
  });
  at::Tensor offsets = at::empty({num_tiles + 1}, means2d.options().dtype(at::kLong));
  int64_t* off = offsets.data_ptr<int64_t>();
  std::fill(off, off + num_tiles + 1, 0);
  std::vector<int64_t> drawn;
  for (int64_t i = 0; i < n; ++i) {
    const Box& b = boxes[i];
    if (b.w == 0) continue;
    drawn.push_back(i);
    for (int64_t ty = b.y0; ty < b.y0 + b.h; ++ty)
      for (int64_t tx = b.x0; tx < b.x0 + b.w; ++tx) ++off[ty * tiles_x + tx + 1];
  }
  for (int64_t t = 0; t < num_tiles; ++t) off[t + 1] += off[t];
  const int64_t pairs = off[num_tiles];
  if (!drawn.empty()) sort_by_depth(drawn, d);
  at::Tensor gauss_ids = at::empty({pairs}, offsets.options()), tile_ids = at::empty({pairs}, offsets.options());
  int64_t *gid = gauss_ids.data_ptr<int64_t>(), *tid = tile_ids.data_ptr<int64_t>();
  std::vector<int64_t> cursor(off, off + num_tiles);
  for (const int64_t i : drawn) {  // front to back, so every tile's list comes out in depth order
    const Box& b = boxes[i];
    for (int64_t ty = b.y0; ty < b.y0 + b.h; ++ty)
      for (int64_t tx = b.x0; tx < b.x0 + b.w; ++tx) {
        const int64_t tile = ty * tiles_x + tx, at = cursor[tile]++;
        gid[at] = i, tid[at] = tile;
      }
  }
  return {gauss_ids, tile_ids, offsets};
}

// (gauss_ids [M], tile_ids [M], offsets [T + 1]) of means2d [N, 2], extents [N, 2] (box half-widths in
// pixels, 0 = not drawn) and depths [N]: pairs sorted by tile, then by depth.
std::tuple<at::Tensor, at::Tensor, at::Tensor> intersect_tiles(const at::Tensor& means2d, const at::Tensor& extents,
                                                               const at::Tensor& depths, int64_t tiles_x,
                                                               int64_t tiles_y, int64_t tile_size) {
  const int64_t n = means2d.size(0);
  TORCH_CHECK(means2d.device().is_cpu(), "intersect: CPU tensors only");
  TORCH_CHECK(means2d.dim() == 2 && means2d.size(1) == 2 && means2d.is_contiguous(), "intersect: means2d [N, 2]");
  TORCH_CHECK(extents.dim() == 2 && extents.size(0) == n && extents.size(1) == 2 && extents.is_contiguous(),
              "intersect: extents [N, 2]");
  TORCH_CHECK(depths.dim() == 1 && depths.size(0) == n && depths.is_contiguous(), "intersect: depths [N]");
  const auto type = means2d.scalar_type();
  TORCH_CHECK(extents.scalar_type() == type && depths.scalar_type() == type, "intersect: one dtype");
  TORCH_CHECK(tiles_x > 0 && tiles_y > 0 && tile_size > 0, "intersect: tiles");
  if (type == at::kFloat) return intersect_typed<float>(means2d, extents, depths, tiles_x, tiles_y, tile_size);
  TORCH_CHECK(type == at::kDouble, "intersect: float32 or float64");
  return intersect_typed<double>(means2d, extents, depths, tiles_x, tiles_y, tile_size);
}

// The paper's anchor pre-filter (model/neural.py, reference_visible_anchors, the reference): each anchor a
// Gaussian with scales ``scales`` and no rotation, kept when its camera z > near, its blurred 2D covariance
// is invertible and the box of half-size ceil(3 sqrt(λ_max)) around its centre touches a tile of the grid.
// settings: width, height, near, the Jacobian's ray clamp (× tan of the half field of view), the blur
// (pixels²), the tile edge (pixels).
template <typename T>
void visible_typed(const at::Tensor& positions, const at::Tensor& scales, const at::Tensor& world_to_cam,
                   const at::Tensor& K, c10::ArrayRef<double> settings, at::Tensor& out) {
  const T* w = world_to_cam.data_ptr<T>();
  const T* k = K.data_ptr<T>();
  const T fx = k[0], fy = k[4], cx = k[2], cy = k[5];
  const T width = T(settings[0]), height = T(settings[1]), near = T(settings[2]), reach = T(settings[3]),
          blur = T(settings[4]), tile = T(settings[5]);
  const T lim_x = reach * width / (2 * fx), lim_y = reach * height / (2 * fy);
  const T tiles_x = std::ceil(width / tile), tiles_y = std::ceil(height / tile);
  const T *p = positions.data_ptr<T>(), *sc = scales.data_ptr<T>();
  bool* keep = out.data_ptr<bool>();
  auto touches = [tile](T centre, T radius, T tiles) {  // C's int() truncates toward zero, then the grid clamp
    const T first = std::min(std::max(std::trunc((centre - radius) / tile), T(0)), tiles);
    const T end = std::min(std::max(std::trunc((centre + radius + tile - 1) / tile), T(0)), tiles);
    return end != first;
  };
  mgs::chunks(positions.size(0), kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const T* q = p + 3 * n;
      T t[3];
      for (int i = 0; i < 3; ++i) t[i] = q[0] * w[4 * i] + q[1] * w[4 * i + 1] + q[2] * w[4 * i + 2] + w[4 * i + 3];
      const bool in_front = t[2] > near;
      const T z = in_front ? t[2] : T(1);
      const T tx = std::min(std::max(t[0] / z, -lim_x), lim_x) * z;
      const T ty = std::min(std::max(t[1] / z, -lim_y), lim_y) * z;
      T a = 0, b = 0, c = 0;
      for (int j = 0; j < 3; ++j) {  // rows of J W diag(s)
        const T row_x = ((fx / z) * w[j] - (fx * tx / (z * z)) * w[8 + j]) * sc[3 * n + j];
        const T row_y = ((fy / z) * w[4 + j] - (fy * ty / (z * z)) * w[8 + j]) * sc[3 * n + j];
        a += row_x * row_x, b += row_x * row_y, c += row_y * row_y;
      }
      a += blur, c += blur;
      const T det = a * c - b * b, mid = T(0.5) * (a + c);
      const T radius = std::ceil(T(3) * std::sqrt(mid + std::sqrt(std::max(mid * mid - det, T(0.1)))));
      const T u = fx * t[0] / z + cx - T(0.5), v = fy * t[1] / z + cy - T(0.5);
      keep[n] = in_front && det != 0 && std::isfinite(radius) && radius > 0 && touches(u, radius, tiles_x) &&
                touches(v, radius, tiles_y);
    }
  });
}

// out bool [N]: reference_visible_anchors of positions [N, 3] and scales [N, 3] (world units).
void reference_visible(const at::Tensor& positions, const at::Tensor& scales, const at::Tensor& world_to_cam,
                       const at::Tensor& K, c10::ArrayRef<double> settings, at::Tensor out) {
  const auto type = positions.scalar_type();
  TORCH_CHECK(positions.device().is_cpu(), "visible: CPU tensors only");
  TORCH_CHECK(positions.dim() == 2 && positions.size(1) == 3 && positions.is_contiguous() &&
              scales.sizes() == positions.sizes() && scales.is_contiguous(), "visible: positions, scales [N, 3]");
  TORCH_CHECK(world_to_cam.numel() == 16 && world_to_cam.is_contiguous() && K.numel() == 9 && K.is_contiguous(),
              "visible: world_to_cam [4, 4], K [3, 3]");
  TORCH_CHECK(scales.scalar_type() == type && world_to_cam.scalar_type() == type && K.scalar_type() == type,
              "visible: one dtype");
  TORCH_CHECK(type == at::kFloat || type == at::kDouble, "visible: float32 or float64");
  TORCH_CHECK(out.scalar_type() == at::kBool && out.numel() == positions.size(0) && out.is_contiguous(),
              "visible: out bool [N]");
  if (positions.scalar_type() == at::kFloat) {
    visible_typed<float>(positions, scales, world_to_cam, K, settings, out);
  } else {
    visible_typed<double>(positions, scales, world_to_cam, K, settings, out);
  }
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(momentum_gs, m) {
  m.def("reference_visible(Tensor positions, Tensor scales, Tensor world_to_cam, Tensor K, float[] settings, "
        "Tensor(a!) out) -> ()", &reference_visible);
  m.def("project_forward(Tensor means, Tensor quats, Tensor scales, Tensor world_to_cam, Tensor K, "
        "float[] settings, Tensor(a!) means2d, Tensor(b!) covars2d, Tensor(c!) conics, Tensor(d!) depths, "
        "Tensor(e!) radii) -> ()", &project_forward);
  m.def("project_backward(Tensor means, Tensor quats, Tensor scales, Tensor world_to_cam, Tensor K, "
        "float[] settings, Tensor grad_means2d, Tensor grad_conics, Tensor grad_depths, Tensor(a!) grad_means, "
        "Tensor(b!) grad_quats, Tensor(c!) grad_scales) -> ()", &project_backward);
  m.def("intersect_tiles(Tensor means2d, Tensor extents, Tensor depths, int tiles_x, int tiles_y, int tile_size) "
        "-> (Tensor, Tensor, Tensor)", &intersect_tiles);
}
