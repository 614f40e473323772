// The one place where the kernels' vector width is chosen, per target, at compile time.
//
// The kernels are written with GCC/Clang vector extensions (``Simd<T>::V``: a vector of T the compiler lowers
// to the target's instructions) and never with intrinsics, so every target runs the same source. What differs
// per target is only how wide a vector is, and that is set here from the macros the compiler defines for the
// -march it was given:
//
//     target                       macro           vector   float lanes   double lanes
//     AVX-512 (x86-64-v4, Zen 4)   __AVX512F__     64 B     16            8
//     AVX2 (x86-64-v3, Zen 3)      __AVX2__        32 B     8             4
//     NEON (aarch64, Apple M)      __ARM_NEON      16 B     4             2
//     SSE2 (x86-64) or other       (none)          16 B     4             2
//
// A vector is one register of the target: a 64-byte vector on AVX2 would be two registers, twice the register
// pressure (the compositor's backward keeps nine sums per pair and spilled them) and shuffles that cross
// registers. -DMGS_VECTOR_BYTES=N overrides the choice (for measuring; any power of two from 16 to 64 is
// correct on any target). The arithmetic, and the order of every sum, are the same at every width up to the
// lane sums' tree (a halving tree over the lanes: deterministic for one build, rounding-different between
// widths).
#pragma once

#include <cstdint>
#include <cstring>
#include <utility>

#ifndef MGS_VECTOR_BYTES
#if defined(__AVX512F__)
#define MGS_VECTOR_BYTES 64
#elif defined(__AVX2__) || defined(__AVX__)
#define MGS_VECTOR_BYTES 32
#else  // NEON, SSE2, anything else: 16-byte registers
#define MGS_VECTOR_BYTES 16
#endif
#endif

#if defined(__AVX512F__)
#define MGS_ISA "avx512"
#elif defined(__AVX2__)
#define MGS_ISA "avx2"
#elif defined(__AVX__)
#define MGS_ISA "avx"
#elif defined(__ARM_NEON) || defined(__ARM_NEON__)
#define MGS_ISA "neon"
#elif defined(__SSE2__)
#define MGS_ISA "sse2"
#else
#define MGS_ISA "generic"
#endif

static_assert(MGS_VECTOR_BYTES == 16 || MGS_VECTOR_BYTES == 32 || MGS_VECTOR_BYTES == 64,
              "MGS_VECTOR_BYTES: 16, 32 or 64");

namespace mgs {

constexpr int kVectorBytes = MGS_VECTOR_BYTES;

template <typename T, int Bytes>
struct VecOf {
  typedef T type __attribute__((vector_size(Bytes)));
};

template <typename T>
struct SameSizeInt;
template <>
struct SameSizeInt<float> {
  using type = int32_t;
};
template <>
struct SameSizeInt<double> {
  using type = int64_t;
};

// V: a vector of T; M: the integer vector of the same lanes (masks: −1 = true; shuffle indices).
template <typename T>
struct Simd {
  using V = typename VecOf<T, kVectorBytes>::type;
  using M = typename VecOf<typename SameSizeInt<T>::type, kVectorBytes>::type;
  static constexpr int64_t lanes = kVectorBytes / sizeof(T);
};

template <typename T>
constexpr int64_t lanes() {
  return Simd<T>::lanes;
}

// Unaligned loads and stores of whole vectors.
template <typename V>
inline V load(const void* from) {
  V v;
  std::memcpy(&v, from, sizeof v);
  return v;
}

template <typename V>
inline void store(void* to, const V& v) {
  std::memcpy(to, &v, sizeof v);
}

// The sum of a vector's lanes by halving (low half + high half, down to one lane): a fixed tree.
template <typename T, int Bytes = kVectorBytes>
inline T lane_sum(typename VecOf<T, Bytes>::type v) {
  if constexpr (Bytes == 2 * int(sizeof(T))) {
    return v[0] + v[1];
  } else {
    typename VecOf<T, Bytes / 2>::type low, high;
    std::memcpy(&low, &v, Bytes / 2);
    std::memcpy(&high, reinterpret_cast<const char*>(&v) + Bytes / 2, Bytes / 2);
    return lane_sum<T, Bytes / 2>(low + high);
  }
}

// Lanes of two vectors (a's, then b's) picked by constant indices, for GCC and Clang.
#if defined(__clang__)
#define MGS_SHUFFLE(M, a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define MGS_SHUFFLE(M, a, b, ...) __builtin_shuffle(a, b, (M){__VA_ARGS__})
#endif

// One level of the halving tree for vectors whose lanes are segments of Seg lanes, each segment the partial
// sums of one original vector: the segments of a, then of b, each replaced by its low half + its high half
// (segments of Seg / 2 lanes, twice as many of them in one vector).
template <typename T, int Seg, int... I>
inline typename Simd<T>::V fold(typename Simd<T>::V a, typename Simd<T>::V b, std::integer_sequence<int, I...>) {
  using M = typename Simd<T>::M;
  constexpr int half = Seg / 2;
  return MGS_SHUFFLE(M, a, b, (I / half * Seg + I % half)...) +
         MGS_SHUFFLE(M, a, b, (I / half * Seg + half + I % half)...);
}

// Folds Count vectors of segments of Seg lanes until every segment is one lane; writes the eight sums.
template <typename T, int Count, int Seg>
inline void fold_all(typename Simd<T>::V* v, T* out) {
  constexpr int L = int(Simd<T>::lanes);
  using Lanes = std::make_integer_sequence<int, L>;
  if constexpr (Seg == 1) {
    for (int j = 0; j < 8; ++j) out[j] = v[j / L][j % L];
  } else if constexpr (Count == 1) {  // all eight in one vector: fold it with itself, keep the first half
    v[0] = fold<T, Seg>(v[0], v[0], Lanes{});
    fold_all<T, 1, Seg / 2>(v, out);
  } else {
    for (int j = 0; j < Count / 2; ++j) v[j] = fold<T, Seg>(v[2 * j], v[2 * j + 1], Lanes{});
    fold_all<T, Count / 2, Seg / 2>(v, out);
  }
}

// out[j] = lane_sum(v[j]) for 8 vectors, the same bits (the same halving tree per vector), with the vectors'
// halves interleaved by shuffles so that each add works on two vectors' halves at once.
template <typename T>
inline void lane_sums8(const typename Simd<T>::V* v, T* out) {
  typename Simd<T>::V work[8];
  for (int j = 0; j < 8; ++j) work[j] = v[j];
  fold_all<T, 8, int(Simd<T>::lanes)>(work, out);
}

}  // namespace mgs
