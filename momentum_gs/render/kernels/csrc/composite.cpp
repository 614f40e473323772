// Fused front-to-back alpha compositing of sorted Gaussian × tile pairs, forward and backward, on the CPU.
//
// The semantics are those of momentum_gs/render/composite.py (CompositeTiles), which stays the reference:
// per pair i (coefs k [6], opacity o, colour c [D]) and pixel p of its tile, with features
// f = (u², uv, v², u, v) of the pixel centre in tile-local coordinates,
//     log α = ln o − k5 − (k0 u² + k1 uv + k2 v² + k3 u + k4 v),  α = exp(min(log α, ln 0.99)),
// α skipped below 1/255, and the pixel done once T·(1 − α) would be <= 1e-4 (that pair dropped too).
// Output per tile [D + 1, P]: Σ wᵢcᵢ and Σ wᵢ (alpha), wᵢ = αᵢTᵢ.
//
// Layout of the work: one tile at a time per thread (tiles handed out dynamically on the kernels' threads,
// parallel.h; each tile writes only its own output rows and its own pairs' gradients, so the result does not
// depend on the scheduling), pairs front to back in the outer loop and the tile's pixels in the inner,
// vectorised loop. The backward recomputes α and T front to back, exactly as the forward did, and gets
// Σ_{j>i} wⱼ(g·ĉⱼ) as the pixel's total g·Y minus the running prefix, as the reference does.
// Colour depth 3 (RGB) is compiled with the depth as a constant, so that the colour loops unroll and the
// backward's colour sums stay in registers; any other depth is read at run time (the same arithmetic).
//
// Two entry points: composite_* reads per-pair rows (coefs, opacities, colours [M, ...]); gaussians_* reads
// per-Gaussian rows (means2d, conics, opacities, colours [N, ...]) through the sorted gauss_ids, makes each
// pair's coefficients in its tile's coordinates (composite.pair_coefficients) inside the tile loop, and sums
// the pairs' gradients per Gaussian in pair order (add_pairs), so that no [M, ...] tensor is made.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "parallel.h"
#include "simd.h"

namespace {

// Vectors of pixels: Simd<T>::V, as wide as one register of the target (simd.h); masks Simd<T>::M (−1 = true).
using mgs::lane_sum;
using mgs::lane_sums8;
using mgs::lanes;
using mgs::Simd;
using VecF = Simd<float>::V;
using MaskF = Simd<float>::M;
using VecD = Simd<double>::V;
using MaskD = Simd<double>::M;

// Added to ln(255 o) when a pair's band of rows is made (GaussianRows::band): the log α the kernel computes may
// be off by rounding (about 1e-6 in float), and where α falls slowly (a wide Gaussian with o near 1/255) that
// moves its 1/255 edge far. 1e-4 keeps the band a superset of the rows where α can round to >= 1/255.
constexpr double kBandSlack = 1e-4;

template <typename T>
struct Limits {  // composite.py's constants, in the compute type; passed in by the caller
  T alpha_min, log_alpha_max, log_alpha_skip, trans_min, tiny;
  explicit Limits(c10::ArrayRef<double> v)
      : alpha_min(T(v[0])), log_alpha_max(T(v[1])), log_alpha_skip(T(v[2])), trans_min(T(v[3])),
        tiny(std::numeric_limits<T>::min()) {}
};

// GCC may leave a call in the per-pixel loop where a tile loop is reachable from two call sites (one thread
// and the pool's, parallel.h): 22 % slower forward. The pixel step is inlined by order.
#define MGS_PIXEL_STEP __attribute__((always_inline)) inline

// exp(x) for x in [ln(1/255) − 1, 0] (the clamped log α): Cody–Waite reduction x = n ln2 + r with
// n = round(x / ln2) (by truncating a positive number: x > −16 ln2), a Cephes polynomial (float) or Padé
// form (double) in r, and 2ⁿ written into the exponent bits.
MGS_PIXEL_STEP VecF exp_narrow(VecF x) {
  const MaskF ni = __builtin_convertvector(x * 1.44269504088896341f + 16.5f, MaskF) - 16;
  const VecF n = __builtin_convertvector(ni, VecF);
  VecF r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  VecF p = r * 1.9875691500e-4f + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return p * (VecF)((ni + 127) << 23);
}

MGS_PIXEL_STEP VecD exp_narrow(VecD x) {
  const MaskD ni = __builtin_convertvector(x * 1.4426950408889634073599 + 16.5, MaskD) - 16;
  const VecD n = __builtin_convertvector(ni, VecD);
  VecD r = x - n * 6.93145751953125e-1;
  r = r - n * 1.42860682030941723212e-6;
  const VecD rr = r * r;
  const VecD px = r * ((rr * 1.26177193074810590878e-4 + 3.02994407707441961300e-2) * rr +
                       9.99999999999999999910e-1);
  const VecD qx = ((rr * 3.00198505138664455042e-6 + 2.52448340349684104192e-3) * rr +
                   2.27265548208155028766e-1) * rr + 2.00000000000000000009e0;
  return (1.0 + 2.0 * (px / (qx - px))) * (VecD)((ni + 1023) << 52);
}

// Tile-local pixel-centre features (u², uv, v², u, v), in vectors of pixels (row-major), and which lanes
// are pixels (the last vector may be partly padding, which starts done).
template <typename T>
struct Pixels {
  using V = typename Simd<T>::V;
  using M = typename Simd<T>::M;
  int64_t count, blocks;
  std::vector<V> uu, uv, vv, u, v;
  std::vector<M> real;
  std::vector<double> top, bottom, left, right;  // per vector, the smallest and largest v, u of its pixels
  explicit Pixels(int64_t tile_size)
      : count(tile_size * tile_size), blocks((count + lanes<T>() - 1) / lanes<T>()),
        uu(blocks), uv(blocks), vv(blocks), u(blocks), v(blocks), real(blocks), top(blocks), bottom(blocks),
        left(blocks), right(blocks) {
    for (int64_t p = 0; p < blocks * lanes<T>(); ++p) {
      const int64_t b = p / lanes<T>(), l = p % lanes<T>();
      const T x = p < count ? T(p % tile_size) + T(0.5) - T(0.5) * T(tile_size) : T(0);
      const T y = p < count ? T(p / tile_size) + T(0.5) - T(0.5) * T(tile_size) : T(0);
      uu[b][l] = x * x, uv[b][l] = x * y, vv[b][l] = y * y, u[b][l] = x, v[b][l] = y;
      real[b][l] = p < count ? -1 : 0;
      if (p < count) {
        top[b] = l == 0 ? double(y) : std::min(top[b], double(y));
        bottom[b] = l == 0 ? double(y) : std::max(bottom[b], double(y));
        left[b] = l == 0 ? double(x) : std::min(left[b], double(x));
        right[b] = l == 0 ? double(x) : std::max(right[b], double(x));
      }
    }
  }
  // The vectors [first, last) with a pixel row in the band |v − centre| <= half (an empty range for half < 0).
  void rows_between(double centre, double half, int64_t& first, int64_t& last) const {
    first = 0, last = blocks;
    while (first < last && bottom[first] < centre - half) ++first;
    while (last > first && top[last - 1] > centre + half) --last;
  }
  // Whether vector b has no pixel column in |u − centre| <= half (one with a row in the band may still have
  // none: on AVX2 a 16-pixel row is two vectors, on NEON four).
  bool outside_columns(int64_t b, double centre, double half) const {
    return right[b] < centre - half || left[b] > centre + half;
  }
};

// Per-thread state of one tile: transmittance, still-drawing mask, the running Σ wⱼ(g·ĉⱼ), the output
// (forward) or the upstream gradient and the output (backward) as [channels][blocks], the pixels' g·Y,
// and per-channel colour-gradient accumulators.
template <typename T>
struct Scratch {
  using V = typename Simd<T>::V;
  using M = typename Simd<T>::M;
  std::vector<V> trans, prefix, total, planes, values, color_sums;
  std::vector<T> color_totals;
  std::vector<M> live;
  Scratch(int64_t blocks, int64_t channels)
      : trans(blocks), prefix(blocks), total(blocks), planes(channels * blocks), values(channels * blocks),
        color_sums(channels), color_totals(channels), live(blocks) {}
  void reset(const Pixels<T>& px) {
    for (int64_t b = 0; b < px.blocks; ++b) trans[b] = V{} + T(1), prefix[b] = V{}, live[b] = px.real[b];
  }
  // [channels, count] rows of a tensor into [channels][blocks] vectors, padding lanes 0.
  static void load_planes(const T* rows, int64_t channels, int64_t count, int64_t blocks, std::vector<V>& to) {
    std::fill(to.begin(), to.end(), V{});
    for (int64_t c = 0; c < channels; ++c) std::memcpy(&to[c * blocks], rows + c * count, count * sizeof(T));
  }
};

// α, the early stop and the weight of one pair in one vector of pixels; updates transmittance and mask.
// ``after`` gets T·(1 − α) (the transmittance after the pair where it is drawn), ``raw`` the unclamped log α.
template <typename T>
struct PairStep {
  using V = typename Simd<T>::V;
  using M = typename Simd<T>::M;
  T k0, k1, k2, k3, k4, lc;
  const Limits<T>& lim;
  PairStep(const T* k, T log_opacity, const Limits<T>& lim_)
      : k0(k[0]), k1(k[1]), k2(k[2]), k3(k[3]), k4(k[4]), lc(log_opacity - k[5]), lim(lim_) {}
  MGS_PIXEL_STEP V operator()(const Pixels<T>& px, int64_t b, V& trans, M& live, V& raw, V& after) const {
    raw = lc - (k0 * px.uu[b] + k1 * px.uv[b] + k2 * px.vv[b] + k3 * px.u[b] + k4 * px.v[b]);
    V clamped = raw < lim.log_alpha_skip ? V{} + lim.log_alpha_skip : raw;
    clamped = clamped > lim.log_alpha_max ? V{} + lim.log_alpha_max : clamped;
    V alpha = exp_narrow(clamped);
    alpha = (alpha >= lim.alpha_min) & live ? alpha : V{};
    after = trans * (T(1) - alpha);
    const M stop = after <= lim.trans_min;
    const V w = stop ? V{} : alpha * trans;
    live = stop ? M{} : live;
    trans = stop ? trans : after;
    return w;
  }
};

template <typename T>
inline bool any_live(const Scratch<T>& s, int64_t blocks) {
  typename Simd<T>::M any{};
  for (int64_t b = 0; b < blocks; ++b) any |= s.live[b];
  for (int64_t l = 0; l < lanes<T>(); ++l) {
    if (any[l]) return true;
  }
  return false;
}

// Where a pair's coefficients, opacity and colour come from: per-pair rows (``PairRows``: coefs [M, 6],
// opacities [M], colors [M, D]) or, for ``GaussianRows``, the pair's Gaussian's rows (means2d [N, 2],
// conics [N, 3], opacities [N], colors [N, D]) with the coefficients made in the tile's local coordinates
// as composite.pair_coefficients makes them. ``mean`` gets the mean minus the tile centre (GaussianRows).
template <typename T>
struct PairRows {
  const T *coefs, *opacities, *colors;
  int64_t depth;
  inline std::pair<double, double> centre(int64_t) const { return {0, 0}; }
  inline void coefficients(const std::pair<double, double>&, int64_t i, T* k, double* mean) const {
    std::memcpy(k, coefs + 6 * i, 6 * sizeof(T));
    mean[0] = mean[1] = 0;
  }
  inline double band(int64_t) const { return std::numeric_limits<double>::infinity(); }
  inline double width(int64_t) const { return std::numeric_limits<double>::infinity(); }
  inline T opacity(int64_t i) const { return opacities[i]; }
  inline T log_opacity(int64_t i) const { return std::log(std::max(opacities[i], std::numeric_limits<T>::min())); }
  inline const T* color(int64_t i) const { return colors + depth * i; }
};

template <typename T>
struct GaussianRows {
  const T *means2d, *conics, *opacities, *colors;
  const int64_t* gauss_ids;
  int64_t depth, tiles_x, tile_size;
  std::vector<T> log_opacities;  // per Gaussian, ln o (made once, not per pair)
  std::vector<double> bands;     // per Gaussian, the half-height of ``band``
  std::vector<double> widths;    // per Gaussian, the half-width of the same ellipse (``width``)
  // In double whatever T (a few scalar operations per pair): k5 = ½ mᵀQm cancels against ln o, so it is
  // rounded once, not after every step.
  // The centre of tile t in image coordinates (made once per tile: an integer division).
  inline std::pair<double, double> centre(int64_t t) const {
    return {(double(t % tiles_x) + 0.5) * double(tile_size), (double(t / tiles_x) + 0.5) * double(tile_size)};
  }
  inline void coefficients(const std::pair<double, double>& centre, int64_t i, T* k, double* mean) const {
    const int64_t g = gauss_ids[i];
    const double mx = double(means2d[2 * g]) - centre.first;
    const double my = double(means2d[2 * g + 1]) - centre.second;
    const double a = conics[3 * g], b = conics[3 * g + 1], c = conics[3 * g + 2];
    const double lin_x = a * mx + b * my, lin_y = b * mx + c * my;
    k[0] = T(0.5 * a), k[1] = T(b), k[2] = T(0.5 * c), k[3] = T(-lin_x), k[4] = T(-lin_y);
    k[5] = T(0.5 * (lin_x * mx + lin_y * my));
    mean[0] = mx, mean[1] = my;
  }
  // Half the height of the band of rows around the mean where α can reach 1/255 (o·exp(−½dᵀQd) >= 1/255:
  // dᵀQd <= 2 ln(255 o), whose y-extent is sqrt(2 ln(255 o)·Σ_yy), Σ_yy = Q_xx / det Q), widened well beyond
  // rounding: ln(255 o) + kBandSlack, then 0.1 % + 0.01 px; negative when the pair is drawn nowhere, infinite
  // when Q is not positive definite.
  inline double band(int64_t i) const { return bands[gauss_ids[i]]; }
  // The same for the columns: sqrt(2 ln(255 o)·Σ_xx), Σ_xx = Q_yy / det Q, widened alike.
  inline double width(int64_t i) const { return widths[gauss_ids[i]]; }
  inline T opacity(int64_t i) const { return opacities[gauss_ids[i]]; }
  inline T log_opacity(int64_t i) const { return log_opacities[gauss_ids[i]]; }
  inline const T* color(int64_t i) const { return colors + depth * gauss_ids[i]; }
};

template <int kDepth, typename T, typename Source>
void forward_tile(const Pixels<T>& px, const Limits<T>& lim, const Source& src, int64_t tile, int64_t begin,
                  int64_t end, T* out, Scratch<T>& s) {
  using V = typename Simd<T>::V;
  const int64_t blocks = px.blocks, depth = kDepth > 0 ? kDepth : src.depth, channels = depth + 1;
  s.reset(px);
  std::fill(s.planes.begin(), s.planes.end(), V{});
  V raw, after;
  T k[6];
  double mean[2];
  int64_t first, last;
  const auto centre = src.centre(tile);
  for (int64_t i = begin; i < end; ++i) {
    src.coefficients(centre, i, k, mean);
    px.rows_between(mean[1], src.band(i), first, last);  // elsewhere α < 1/255: nothing changes
    const double half_width = src.width(i);
    const PairStep<T> step(k, src.log_opacity(i), lim);
    const T* color = src.color(i);
    for (int64_t b = first; b < last; ++b) {
      if (px.outside_columns(b, mean[0], half_width)) continue;
      const V w = step(px, b, s.trans[b], s.live[b], raw, after);
      for (int64_t c = 0; c < depth; ++c) s.planes[c * blocks + b] += w * color[c];
      s.planes[depth * blocks + b] += w;  // alpha: ĉ = 1
    }
    if (!any_live(s, blocks)) break;
  }
  for (int64_t c = 0; c < channels; ++c) std::memcpy(out + c * px.count, &s.planes[c * blocks], px.count * sizeof(T));
}

// The gradients of pair i go to ``sink(i, coefs, grad_coefs [6], grad_opacity, grad_colors [D], D, mean)`` (D: the
// colour depth, a constant where kDepth is, so that the sink's copies of D values are not library calls; mean:
// the Gaussian's mean minus the tile centre, made by GaussianRows only).
template <int kDepth, typename T, typename Source, typename Sink>
void backward_tile(const Pixels<T>& px, const Limits<T>& lim, const Source& src, int64_t tile, int64_t begin,
                   int64_t end, const T* out, const T* grad_out, const Sink& sink, Scratch<T>& s) {
  using V = typename Simd<T>::V;
  const int64_t blocks = px.blocks, depth = kDepth > 0 ? kDepth : src.depth, channels = depth + 1, count = px.count;
  s.reset(px);
  s.load_planes(out, channels, count, blocks, s.values);
  s.load_planes(grad_out, channels, count, blocks, s.planes);
  const V *g = s.planes.data(), *y = s.values.data();
  for (int64_t b = 0; b < blocks; ++b) {
    V total{};  // g·Y
    for (int64_t c = 0; c < channels; ++c) total += g[c * blocks + b] * y[c * blocks + b];
    s.total[b] = total;
  }
  V raw, after;
  T k[6];
  double mean[2];
  int64_t first, last;
  const auto centre = src.centre(tile);
  for (int64_t i = begin; i < end; ++i) {
    src.coefficients(centre, i, k, mean);
    px.rows_between(mean[1], src.band(i), first, last);  // elsewhere w = 0 and ∂L/∂α = 0
    const double half_width = src.width(i);
    const T opacity = src.opacity(i);
    const PairStep<T> step(k, src.log_opacity(i), lim);
    const T* color = src.color(i);
    V s0{}, s1{}, s2{}, s3{}, s4{}, s5{};
    V fixed_sums[kDepth > 0 ? kDepth : 1];
    V* color_sums = kDepth > 0 ? fixed_sums : s.color_sums.data();
    for (int64_t c = 0; c < depth; ++c) color_sums[c] = V{};
    for (int64_t b = first; b < last; ++b) {
      if (px.outside_columns(b, mean[0], half_width)) continue;
      const V w = step(px, b, s.trans[b], s.live[b], raw, after);
      V gc = g[depth * blocks + b];  // g·ĉ, ĉ = (colour, 1)
      for (int64_t c = 0; c < depth; ++c) {
        gc += g[c * blocks + b] * color[c];
        color_sums[c] += g[c * blocks + b] * w;
      }
      const V seen = s.prefix[b] + w * gc;
      s.prefix[b] = seen;
      // α ∂L/∂α = w (g·ĉ − Σ_{j>i} wⱼ g·ĉⱼ / T_after); no gradient where α was clamped at 0.99.
      const V safe = after < lim.trans_min ? V{} + lim.trans_min : after;
      V ga = w * (gc - (s.total[b] - seen) / safe);
      ga = raw < lim.log_alpha_max ? ga : V{};
      s0 += ga * px.uu[b], s1 += ga * px.uv[b], s2 += ga * px.vv[b], s3 += ga * px.u[b], s4 += ga * px.v[b];
      s5 += ga;
    }
    // the lane sums of s0..s5 and the first two colours' in one batch, any further colours' one by one
    const V head[8] = {s0, s1, s2, s3, s4, s5, depth > 0 ? color_sums[0] : V{}, depth > 1 ? color_sums[1] : V{}};
    T sums[8], fixed_totals[kDepth > 0 ? kDepth : 1];
    T* color_totals = kDepth > 0 ? fixed_totals : s.color_totals.data();
    lane_sums8(head, sums);
    for (int64_t c = 0; c < depth; ++c) color_totals[c] = c < 2 ? sums[6 + c] : lane_sum<T>(color_sums[c]);
    T grad_k[6];
    for (int64_t j = 0; j < 6; ++j) grad_k[j] = -sums[j];  // logits are −coefs (+ ln o)
    sink(i, k, grad_k, sums[5] / std::max(opacity, lim.tiny), color_totals, depth, mean);
    if (!any_live(s, blocks)) break;
  }
}

// Calls fn with the colour depth as a compile-time constant for RGB (3), or 0 (read at run time) otherwise.
template <typename Fn>
inline void with_depth(int64_t depth, Fn fn) {
  if (depth == 3) {
    fn(std::integral_constant<int, 3>{});
  } else {
    fn(std::integral_constant<int, 0>{});
  }
}

constexpr int64_t kPairsPerThread = 4096;  // below this many pairs per thread, fewer threads (parallel.h)

// The number of threads the tiles of ``offsets`` [T + 1] take: one per kPairsPerThread pairs, up to all.
inline int64_t tile_threads(const at::Tensor& offsets) {
  const int64_t num_tiles = offsets.numel() - 1;
  const int64_t num_pairs = offsets.data_ptr<int64_t>()[num_tiles];
  return std::min(mgs::workers(num_pairs, kPairsPerThread), std::max<int64_t>(num_tiles, 1));
}

// Runs fn(tile, begin, end, scratch) for every tile on ``threads`` of the kernels' threads (parallel.h),
// tiles handed out one at a time (their costs differ by orders of magnitude), one scratch per thread; a tile
// without pairs gets ``empty(tile)`` instead.
template <typename T, typename Fn, typename Empty>
void for_each_tile(const at::Tensor& offsets_tensor, int64_t threads, const Pixels<T>& px, int64_t channels, Fn fn,
                   Empty empty) {
  const int64_t* offsets = offsets_tensor.data_ptr<int64_t>();
  mgs::dynamic_items(offsets_tensor.numel() - 1, threads,
                     [&] { return Scratch<T>(px.blocks, channels); }, [&](int64_t t, Scratch<T>& scratch) {
                       if (offsets[t + 1] > offsets[t]) {
                         fn(t, offsets[t], offsets[t + 1], scratch);
                       } else {
                         empty(t);
                       }
                     });
}

void check_inputs(const at::Tensor& coefs, const at::Tensor& opacities, const at::Tensor& colors,
                  const at::Tensor& offsets) {
  TORCH_CHECK(coefs.device().is_cpu(), "composite: CPU tensors only");
  TORCH_CHECK(coefs.dim() == 2 && coefs.size(1) == 6 && coefs.is_contiguous(), "composite: coefs [M, 6]");
  TORCH_CHECK(opacities.dim() == 1 && opacities.size(0) == coefs.size(0) && opacities.is_contiguous(),
              "composite: opacities [M]");
  TORCH_CHECK(colors.dim() == 2 && colors.size(0) == coefs.size(0) && colors.is_contiguous(),
              "composite: colors [M, D]");
  TORCH_CHECK(opacities.scalar_type() == coefs.scalar_type() && colors.scalar_type() == coefs.scalar_type(),
              "composite: one dtype");
  TORCH_CHECK(offsets.scalar_type() == at::kLong && offsets.is_contiguous(), "composite: offsets int64");
}

// Every tile's forward pass from ``src`` (PairRows or GaussianRows) into ``out``; tiles with no pair are zeroed.
template <typename T, typename Src>
void forward_tiles(const Src& src, int64_t tile_size, const at::Tensor& offsets, c10::ArrayRef<double> limits,
                   at::Tensor& out) {
  const Pixels<T> px(tile_size);
  const Limits<T> lim(limits);
  const int64_t channels = src.depth + 1;
  T* dst = out.data_ptr<T>();
  with_depth(src.depth, [&](auto kDepth) {
    for_each_tile<T>(offsets, tile_threads(offsets), px, channels,
                     [&](int64_t t, int64_t begin, int64_t end, Scratch<T>& s) {
                       forward_tile<kDepth>(px, lim, src, t, begin, end, dst + t * channels * px.count, s);
                     },
                     [&](int64_t t) { std::fill_n(dst + t * channels * px.count, channels * px.count, T(0)); });
  });
}

template <typename T>
void forward_typed(const at::Tensor& coefs, const at::Tensor& opacities, const at::Tensor& colors,
                   const at::Tensor& offsets, int64_t tile_size, c10::ArrayRef<double> limits, at::Tensor& out) {
  const PairRows<T> src{coefs.data_ptr<T>(), opacities.data_ptr<T>(), colors.data_ptr<T>(), colors.size(1)};
  forward_tiles<T>(src, tile_size, offsets, limits, out);
}

template <typename T>
void backward_typed(const at::Tensor& coefs, const at::Tensor& opacities, const at::Tensor& colors,
                    const at::Tensor& offsets, int64_t tile_size, c10::ArrayRef<double> limits,
                    const at::Tensor& out, const at::Tensor& grad_out, at::Tensor& grad_coefs,
                    at::Tensor& grad_opacities, at::Tensor& grad_colors) {
  const Pixels<T> px(tile_size);
  const Limits<T> lim(limits);
  const int64_t depth = colors.size(1), channels = depth + 1, block = channels * px.count;
  const PairRows<T> src{coefs.data_ptr<T>(), opacities.data_ptr<T>(), colors.data_ptr<T>(), depth};
  const T *y = out.data_ptr<T>(), *g = grad_out.data_ptr<T>();
  T *gk = grad_coefs.data_ptr<T>(), *go = grad_opacities.data_ptr<T>(), *gcol = grad_colors.data_ptr<T>();
  auto sink = [=](int64_t i, const T*, const T* grad_k, T grad_o, const T* color_totals, int64_t depth,
                  const double*) {
    std::memcpy(gk + 6 * i, grad_k, 6 * sizeof(T));
    go[i] = grad_o;
    std::memcpy(gcol + depth * i, color_totals, depth * sizeof(T));
  };
  with_depth(depth, [&](auto kDepth) {
    for_each_tile<T>(offsets, tile_threads(offsets), px, channels,
                     [&](int64_t t, int64_t begin, int64_t end, Scratch<T>& s) {
                       backward_tile<kDepth>(px, lim, src, t, begin, end, y + t * block, g + t * block, sink, s);
                     },
                     [](int64_t) {});
  });
}

// The Gaussians' rows of GaussianRows and the pairs that read them: means2d [N, 2], conics [N, 3],
// opacities [N], colors [N, D], gauss_ids [M] sorted by tile then depth, offsets [T + 1].
void check_gaussians(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& opacities,
                     const at::Tensor& colors, const at::Tensor& gauss_ids, const at::Tensor& offsets) {
  const int64_t n = means2d.size(0);
  TORCH_CHECK(means2d.device().is_cpu(), "composite: CPU tensors only");
  TORCH_CHECK(means2d.dim() == 2 && means2d.size(1) == 2 && means2d.is_contiguous(), "composite: means2d [N, 2]");
  TORCH_CHECK(conics.dim() == 2 && conics.size(0) == n && conics.size(1) == 3 && conics.is_contiguous(),
              "composite: conics [N, 3]");
  TORCH_CHECK(opacities.dim() == 1 && opacities.size(0) == n && opacities.is_contiguous(), "composite: opacities [N]");
  TORCH_CHECK(colors.dim() == 2 && colors.size(0) == n && colors.is_contiguous(), "composite: colors [N, D]");
  TORCH_CHECK(conics.scalar_type() == means2d.scalar_type() && opacities.scalar_type() == means2d.scalar_type() &&
              colors.scalar_type() == means2d.scalar_type(), "composite: one dtype");
  TORCH_CHECK(gauss_ids.scalar_type() == at::kLong && gauss_ids.dim() == 1 && gauss_ids.is_contiguous(),
              "composite: gauss_ids int64 [M]");
  TORCH_CHECK(offsets.scalar_type() == at::kLong && offsets.is_contiguous(), "composite: offsets int64");
  TORCH_CHECK(offsets.numel() >= 1 && offsets.data_ptr<int64_t>()[offsets.numel() - 1] == gauss_ids.numel(),
              "composite: offsets end at M");
}

template <typename T>
GaussianRows<T> gaussian_rows(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& opacities,
                              const at::Tensor& colors, const at::Tensor& gauss_ids, int64_t tiles_x,
                              int64_t tile_size, c10::ArrayRef<double> limits) {
  GaussianRows<T> rows{means2d.data_ptr<T>(), conics.data_ptr<T>(), opacities.data_ptr<T>(), colors.data_ptr<T>(),
                       gauss_ids.data_ptr<int64_t>(), colors.size(1), tiles_x, tile_size, {}, {}, {}};
  const int64_t n = means2d.size(0);
  rows.log_opacities.resize(n), rows.bands.resize(n), rows.widths.resize(n);
  const double alpha_min = limits[0];
  mgs::chunks(n, 2048, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) {
      const T o = rows.opacities[g];
      rows.log_opacities[g] = std::log(std::max(o, std::numeric_limits<T>::min()));
      const double a = rows.conics[3 * g], b = rows.conics[3 * g + 1], c = rows.conics[3 * g + 2];
      const double det = a * c - b * b, level = std::log(double(o) / alpha_min) + kBandSlack;
      if (!(det > 0) || !(a > 0) || std::isnan(level)) {
        rows.bands[g] = rows.widths[g] = std::numeric_limits<double>::infinity();
      } else {
        rows.bands[g] = level < 0 ? -1.0 : std::sqrt(2 * level * a / det) * 1.001 + 1e-2;
        rows.widths[g] = level < 0 ? -1.0 : std::sqrt(2 * level * c / det) * 1.001 + 1e-2;
      }
    }
  });
  return rows;
}

template <typename T>
void gaussians_forward_typed(const GaussianRows<T>& src, const at::Tensor& offsets, c10::ArrayRef<double> limits,
                             at::Tensor& out) {
  forward_tiles<T>(src, src.tile_size, offsets, limits, out);
}

constexpr int64_t kMaxInlineChannels = 32;  // colour channels of a pair's gradient row kept on the stack

// Adds one pair's gradient row [mean x, y, conic a, b, c, opacity, colour D] to its Gaussian n's gradients.
template <typename T>
inline void add_pair(const T* row, int64_t n, int64_t depth, T* gm, T* gk, T* go, T* gc) {
  gm[2 * n] += row[0], gm[2 * n + 1] += row[1];
  gk[3 * n] += row[2], gk[3 * n + 1] += row[3], gk[3 * n + 2] += row[4];
  go[n] += row[5];
  for (int64_t d = 0; d < depth; ++d) gc[depth * n + d] += row[6 + d];
}

// The pairs' rows [M, 6 + D] added into their Gaussians' gradients, each Gaussian's in pair order (as one
// thread adds them pair by pair), the Gaussians split over threads by index: each thread reads every pair's
// Gaussian and adds the rows of those in its range. The same bits at any thread count.
template <typename T>
void add_pairs(const T* rows, const int64_t* gauss_ids, int64_t num_pairs, int64_t num_gaussians, int64_t depth,
               T* gm, T* gk, T* go, T* gc) {
  const int64_t width = 6 + depth, threads = mgs::workers(num_pairs, kPairsPerThread);
  mgs::chunks(num_gaussians, (num_gaussians + threads - 1) / threads, [&](int64_t first, int64_t last) {
    for (int64_t i = 0; i < num_pairs; ++i) {
      const int64_t n = gauss_ids[i];
      if (n >= first && n < last) add_pair(rows + width * i, n, depth, gm, gk, go, gc);
    }
  });
}

// Per pair, the gradients of its Gaussian's rows [mean x, y, conic a, b, c, opacity, colour D] (the chain
// rule through pair_coefficients), on one thread straight into its Gaussian's (tiles, and so pairs, come in
// order), on several into its own row of a [M, 6 + D] buffer, summed per Gaussian in pair order after
// (add_pairs): the same sums in the same order, so the same bits at any thread count.
template <typename T>
void gaussians_backward_typed(const GaussianRows<T>& src, const at::Tensor& offsets, c10::ArrayRef<double> limits,
                              const at::Tensor& out, const at::Tensor& grad_out, at::Tensor& grad_means2d,
                              at::Tensor& grad_conics, at::Tensor& grad_opacities, at::Tensor& grad_colors) {
  const Pixels<T> px(src.tile_size);
  const Limits<T> lim(limits);
  const int64_t depth = src.depth, channels = depth + 1, block = channels * px.count, width = 6 + depth;
  const int64_t num_pairs = offsets.data_ptr<int64_t>()[offsets.numel() - 1], threads = tile_threads(offsets);
  T *gm = grad_means2d.data_ptr<T>(), *gk = grad_conics.data_ptr<T>(), *go = grad_opacities.data_ptr<T>(),
    *gc = grad_colors.data_ptr<T>();
  // the buffer also where a row has more channels than the stack row holds; each tile zeroes its rows first
  // (those after its early stop stay zero), on its thread
  const bool direct = threads == 1 && depth <= kMaxInlineChannels;
  std::unique_ptr<T[]> pairs(direct ? nullptr : new T[num_pairs * width]);
  T* rows = pairs.get();
  // src by reference: a copy would copy its per-Gaussian vectors
  auto sink = [=, &src](int64_t i, const T*, const T* grad_k, T grad_o, const T* color_totals, int64_t depth,
                        const double* mean) {
    const int64_t n = src.gauss_ids[i];
    const double mx = mean[0], my = mean[1], a = src.conics[3 * n], b = src.conics[3 * n + 1],
                 c = src.conics[3 * n + 2];
    const double g0 = grad_k[0], g1 = grad_k[1], g2 = grad_k[2], g3 = grad_k[3], g4 = grad_k[4], g5 = grad_k[5];
    T row[6 + kMaxInlineChannels];
    T* to = direct ? row : rows + width * i;
    to[0] = T(-a * g3 - b * g4 + (a * mx + b * my) * g5);
    to[1] = T(-b * g3 - c * g4 + (b * mx + c * my) * g5);
    to[2] = T(0.5 * g0 - mx * g3 + 0.5 * mx * mx * g5);
    to[3] = T(g1 - my * g3 - mx * g4 + mx * my * g5);
    to[4] = T(0.5 * g2 - my * g4 + 0.5 * my * my * g5);
    to[5] = grad_o;
    std::memcpy(to + 6, color_totals, depth * sizeof(T));
    if (to == row) add_pair(row, n, depth, gm, gk, go, gc);
  };
  const T *y = out.data_ptr<T>(), *g = grad_out.data_ptr<T>();
  with_depth(depth, [&](auto kDepth) {
    for_each_tile<T>(offsets, threads, px, channels,
                     [&](int64_t t, int64_t begin, int64_t end, Scratch<T>& s) {
                       if (rows != nullptr) std::fill(rows + width * begin, rows + width * end, T(0));
                       backward_tile<kDepth>(px, lim, src, t, begin, end, y + t * block, g + t * block, sink, s);
                     },
                     [](int64_t) {});
  });
  if (rows != nullptr) add_pairs(rows, src.gauss_ids, num_pairs, grad_means2d.size(0), depth, gm, gk, go, gc);
}

// out [T, D+1, P] (any values on entry) gets the composited colour and alpha of every tile; offsets [T+1].
void composite_forward(const at::Tensor& coefs, const at::Tensor& opacities, const at::Tensor& colors,
                       const at::Tensor& offsets, int64_t tile_size, c10::ArrayRef<double> limits, at::Tensor out) {
  check_inputs(coefs, opacities, colors, offsets);
  TORCH_CHECK(out.is_contiguous() && out.scalar_type() == coefs.scalar_type(), "composite: out");
  TORCH_CHECK(out.size(0) == offsets.numel() - 1 && out.size(1) == colors.size(1) + 1 &&
              out.size(2) == tile_size * tile_size, "composite: out [T, D+1, P]");
  if (coefs.scalar_type() == at::kFloat) {
    forward_typed<float>(coefs, opacities, colors, offsets, tile_size, limits, out);
  } else {
    TORCH_CHECK(coefs.scalar_type() == at::kDouble, "composite: float32 or float64");
    forward_typed<double>(coefs, opacities, colors, offsets, tile_size, limits, out);
  }
}

// grad_coefs [M, 6], grad_opacities [M], grad_colors [M, D] (zeros on entry) from out and grad_out [T, D+1, P].
void composite_backward(const at::Tensor& coefs, const at::Tensor& opacities, const at::Tensor& colors,
                        const at::Tensor& offsets, int64_t tile_size, c10::ArrayRef<double> limits,
                        const at::Tensor& out, const at::Tensor& grad_out, at::Tensor grad_coefs,
                        at::Tensor grad_opacities, at::Tensor grad_colors) {
  check_inputs(coefs, opacities, colors, offsets);
  TORCH_CHECK(out.is_contiguous() && grad_out.is_contiguous() && grad_out.sizes() == out.sizes(),
              "composite: grad_out like out");
  TORCH_CHECK(grad_coefs.is_contiguous() && grad_opacities.is_contiguous() && grad_colors.is_contiguous(),
              "composite: gradients contiguous");
  if (coefs.scalar_type() == at::kFloat) {
    backward_typed<float>(coefs, opacities, colors, offsets, tile_size, limits, out, grad_out, grad_coefs,
                          grad_opacities, grad_colors);
  } else {
    TORCH_CHECK(coefs.scalar_type() == at::kDouble, "composite: float32 or float64");
    backward_typed<double>(coefs, opacities, colors, offsets, tile_size, limits, out, grad_out, grad_coefs,
                           grad_opacities, grad_colors);
  }
}

// out [T, D+1, P] (any values on entry) as composite_forward, the pairs' coefficients, opacities and colours made
// from their Gaussians' rows inside the tile loop (no per-pair tensors).
void gaussians_forward(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& opacities,
                       const at::Tensor& colors, const at::Tensor& gauss_ids, const at::Tensor& offsets,
                       int64_t tiles_x, int64_t tile_size, c10::ArrayRef<double> limits, at::Tensor out) {
  check_gaussians(means2d, conics, opacities, colors, gauss_ids, offsets);
  TORCH_CHECK(out.is_contiguous() && out.scalar_type() == means2d.scalar_type(), "composite: out");
  TORCH_CHECK(out.size(0) == offsets.numel() - 1 && out.size(1) == colors.size(1) + 1 &&
              out.size(2) == tile_size * tile_size, "composite: out [T, D+1, P]");
  if (means2d.scalar_type() == at::kFloat) {
    gaussians_forward_typed<float>(gaussian_rows<float>(means2d, conics, opacities, colors, gauss_ids, tiles_x,
                                                        tile_size, limits), offsets, limits, out);
  } else {
    TORCH_CHECK(means2d.scalar_type() == at::kDouble, "composite: float32 or float64");
    gaussians_forward_typed<double>(gaussian_rows<double>(means2d, conics, opacities, colors, gauss_ids, tiles_x,
                                                          tile_size, limits), offsets, limits, out);
  }
}

// grad_means2d [N, 2], grad_conics [N, 3], grad_opacities [N], grad_colors [N, D] (zeros on entry).
void gaussians_backward(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& opacities,
                        const at::Tensor& colors, const at::Tensor& gauss_ids, const at::Tensor& offsets,
                        int64_t tiles_x, int64_t tile_size, c10::ArrayRef<double> limits, const at::Tensor& out,
                        const at::Tensor& grad_out, at::Tensor grad_means2d, at::Tensor grad_conics,
                        at::Tensor grad_opacities, at::Tensor grad_colors) {
  check_gaussians(means2d, conics, opacities, colors, gauss_ids, offsets);
  TORCH_CHECK(out.is_contiguous() && grad_out.is_contiguous() && grad_out.sizes() == out.sizes(),
              "composite: grad_out like out");
  TORCH_CHECK(grad_means2d.is_contiguous() && grad_conics.is_contiguous() && grad_opacities.is_contiguous() &&
              grad_colors.is_contiguous(), "composite: gradients contiguous");
  if (means2d.scalar_type() == at::kFloat) {
    gaussians_backward_typed<float>(gaussian_rows<float>(means2d, conics, opacities, colors, gauss_ids, tiles_x,
                                                         tile_size, limits), offsets, limits, out, grad_out,
                                    grad_means2d, grad_conics, grad_opacities, grad_colors);
  } else {
    TORCH_CHECK(means2d.scalar_type() == at::kDouble, "composite: float32 or float64");
    gaussians_backward_typed<double>(gaussian_rows<double>(means2d, conics, opacities, colors, gauss_ids, tiles_x,
                                                           tile_size, limits), offsets, limits, out, grad_out,
                                     grad_means2d, grad_conics, grad_opacities, grad_colors);
  }
}

// image [H, W, D] = colour + (1 − alpha)·background and rest [H, W, C − D] (the other channels, alpha last) of
// per_tile [T, C, s·s] row-major tiles, tiles_x to a row, cropped to H × W: rasterize._untile, the crop and
// the background in one pass, three separate roundings as torch's ops make them: no FMA contraction here
// (the attribute and pragma are per function, so the row is a function of its own, not a lambda's body).
template <typename T>
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("fp-contract=off")))
#endif
void untile_row(const T* tiles, const T* bg, int64_t y, int64_t width, int64_t size, int64_t tiles_x,
                int64_t channels, int64_t depth, T* img, T* out) {
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
  const int64_t pixels = size * size, others = channels - depth;
  for (int64_t x = 0; x < width; ++x) {
    const T* src = tiles + ((y / size) * tiles_x + x / size) * channels * pixels + (y % size) * size + x % size;
    const T one_minus = T(1) - src[(channels - 1) * pixels];
    T* pixel = img + (y * width + x) * depth;
    for (int64_t c = 0; c < depth; ++c) {
      const T behind = one_minus * bg[c];
      pixel[c] = src[c * pixels] + behind;
    }
    T* other = out + (y * width + x) * others;
    for (int64_t c = 0; c < others; ++c) other[c] = src[(depth + c) * pixels];
  }
}

template <typename T>
void untile_typed(const at::Tensor& per_tile, const at::Tensor& background, int64_t tiles_x, int64_t size,
                  at::Tensor& image, at::Tensor& rest) {
  const int64_t channels = per_tile.size(1), depth = image.size(2), width = image.size(1);
  const T* tiles = per_tile.data_ptr<T>();
  const T* bg = background.data_ptr<T>();
  T* img = image.data_ptr<T>();
  T* out = rest.data_ptr<T>();
  mgs::chunks(image.size(0), 16, [&](int64_t y0, int64_t y1) {
    for (int64_t y = y0; y < y1; ++y) untile_row(tiles, bg, y, width, size, tiles_x, channels, depth, img, out);
  });
}

void untile(const at::Tensor& per_tile, const at::Tensor& background, int64_t tiles_x, at::Tensor image,
            at::Tensor rest) {
  TORCH_CHECK(per_tile.dim() == 3 && per_tile.is_contiguous() && image.is_contiguous() && rest.is_contiguous() &&
              background.is_contiguous(), "untile: contiguous per_tile [T, C, P], image, rest, background");
  const int64_t size = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(per_tile.size(2)))));
  TORCH_CHECK(size * size == per_tile.size(2) && tiles_x > 0 && per_tile.size(0) % tiles_x == 0, "untile: tiles");
  TORCH_CHECK(image.dim() == 3 && rest.dim() == 3 && image.size(0) == rest.size(0) && image.size(1) == rest.size(1) &&
              image.size(2) + rest.size(2) == per_tile.size(1) && rest.size(2) >= 1 &&
              background.numel() == image.size(2), "untile: image [H, W, D], rest [H, W, C - D], background [D]");
  TORCH_CHECK(image.size(0) <= per_tile.size(0) / tiles_x * size && image.size(1) <= tiles_x * size,
              "untile: the image is larger than the tiles");
  const auto type = per_tile.scalar_type();
  TORCH_CHECK(image.scalar_type() == type && rest.scalar_type() == type && background.scalar_type() == type,
              "untile: one dtype");
  if (type == at::kFloat) {
    untile_typed<float>(per_tile, background, tiles_x, size, image, rest);
  } else {
    TORCH_CHECK(type == at::kDouble, "untile: float32 or float64");
    untile_typed<double>(per_tile, background, tiles_x, size, image, rest);
  }
}

// Sets parallel.h's split_small (every grain 1, for tests) and returns its previous value.
bool split_small_work(bool on) { return mgs::split_small().exchange(on); }

// The kernels take ``count`` threads while torch's count is ``torch`` (parallel.h; count 0: torch's).
void set_kernel_threads(int64_t count, int64_t torch) {
  mgs::kernel_threads().torch.store(torch);
  mgs::kernel_threads().count.store(std::max<int64_t>(count, 0));
}

// The threads a kernel called now may take (parallel.h's threads()).
int64_t kernel_thread_count() { return mgs::threads(); }

// What this build was compiled for (simd.h): "avx2, 32-byte vectors".
std::string build_target() {
  return std::string(MGS_ISA) + ", " + std::to_string(MGS_VECTOR_BYTES) + "-byte vectors";
}

}  // namespace

TORCH_LIBRARY(momentum_gs, m) {
  m.def("build_target() -> str", &build_target);
  m.def("split_small_work(bool on) -> bool", &split_small_work);
  m.def("set_kernel_threads(int count, int torch) -> ()", &set_kernel_threads);
  m.def("kernel_thread_count() -> int", &kernel_thread_count);
  m.def("untile(Tensor per_tile, Tensor background, int tiles_x, Tensor(a!) image, Tensor(b!) rest) -> ()",
        &untile);
  m.def("composite_forward(Tensor coefs, Tensor opacities, Tensor colors, Tensor offsets, int tile_size, "
        "float[] limits, Tensor(a!) out) -> ()", &composite_forward);
  m.def("composite_backward(Tensor coefs, Tensor opacities, Tensor colors, Tensor offsets, int tile_size, "
        "float[] limits, Tensor out, Tensor grad_out, Tensor(a!) grad_coefs, Tensor(b!) grad_opacities, "
        "Tensor(c!) grad_colors) -> ()", &composite_backward);
  m.def("gaussians_forward(Tensor means2d, Tensor conics, Tensor opacities, Tensor colors, Tensor gauss_ids, "
        "Tensor offsets, int tiles_x, int tile_size, float[] limits, Tensor(a!) out) -> ()", &gaussians_forward);
  m.def("gaussians_backward(Tensor means2d, Tensor conics, Tensor opacities, Tensor colors, Tensor gauss_ids, "
        "Tensor offsets, int tiles_x, int tile_size, float[] limits, Tensor out, Tensor grad_out, "
        "Tensor(a!) grad_means2d, Tensor(b!) grad_conics, Tensor(c!) grad_opacities, Tensor(d!) grad_colors) -> ()",
        &gaussians_backward);
}
