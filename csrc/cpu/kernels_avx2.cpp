// The per-plane kernels built for AVX2 + FMA + F16C (8 float or 4 double
// lanes, 16 registers). The target pragma applies to everything after it, so
// this translation unit may only run once select_plane_kernels() has checked
// the CPU.
#include "plane_kernels.h"

#include <immintrin.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#pragma GCC target("avx2,fma,f16c")

#include "storage_types.h"

namespace mula::cpu {
namespace {

struct Avx2Blocking {
  // Forward tiles of 3 rows x 4 vectors: 12 accumulators, 3 taps, 1 input.
  static constexpr int kRowBlock = 3;
  static constexpr int kColBlock = 4;
  // Weight gradient: one filter row, 7 accumulators.
  static constexpr int kWeightRowBlock = 1;
  // Channel-blocked tiles (not depthwise): 6 output planes x 2 vectors = 12
  // accumulators; the weight gradient blocks up to 2 grad_output planes by
  // input planes, 12 accumulators (the 2 grad_output vectors fit beside them).
  static constexpr int kChannelBlock = 6;
  static constexpr int kChannelRowBlock = 1;
  static constexpr int kWeightAccumulators = 12;
  static constexpr int kWeightChannelBlock = 2;
};

struct SimdF32 : Avx2Blocking {
  using Scalar = float;
  using V = __m256;
  static constexpr int kLanes = 8;
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V broadcast(float x) { return _mm256_set1_ps(x); }
  static V zero() { return _mm256_setzero_ps(); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  // Makes the compiler keep a loaded vector in a register: otherwise it
  // folds the load into every multiply-add that uses it, loading it again.
  static V in_register(V v) {
    asm("" : "+x"(v));
    return v;
  }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  // The even and odd entries of the 2 * kLanes values in a, then b:
  // shuffled within the 128-bit halves, then the 64-bit pairs put in order.
  static void deinterleave(V a, V b, V& even, V& odd) {
    even = pairs_in_order(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)));
    odd = pairs_in_order(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
  }
  // The inverse: even[0], odd[0], even[1], ... into low, high (interleaved
  // within the 128-bit halves, then the halves put in order).
  static void interleave(V even, V odd, V& low, V& high) {
    const V first = _mm256_unpacklo_ps(even, odd);
    const V second = _mm256_unpackhi_ps(even, odd);
    low = _mm256_permute2f128_ps(first, second, 0x20);
    high = _mm256_permute2f128_ps(first, second, 0x31);
  }
  static V pairs_in_order(V v) {
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(v), _MM_SHUFFLE(3, 1, 2, 0)));
  }
  static float sum(V v) {
    const __m128 halves = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 pairs = _mm_add_ps(halves, _mm_movehl_ps(halves, halves));
    return _mm_cvtss_f32(_mm_add_ss(pairs, _mm_shuffle_ps(pairs, pairs, 1)));
  }
  // Storage conversions, rounding as csrc/half_rounding.h does: F16C's
  // round-to-nearest-even for float16; for bfloat16 the same integer
  // rounding, NaN as 0x7fc0.
  static V widen(const float* p) { return load(p); }
  static V widen(const HalfBits* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static V widen(const BFloat16Bits* p) {
    const __m256i bits = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(bits, 16));
  }
  static void narrow(float* p, V v) { store(p, v); }
  static void narrow(HalfBits* p, V v) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                     _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  static void narrow(BFloat16Bits* p, V v) {
    const __m256i bits = _mm256_castps_si256(v);
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
    __m256i rounded =
        _mm256_srli_epi32(_mm256_add_epi32(bits, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7fff))), 16);
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    rounded = _mm256_blendv_epi8(rounded, _mm256_set1_epi32(0x7fc0), nan);
    // Every lane holds a value below 2^16, so the saturating pack is exact.
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                     _mm_packus_epi32(_mm256_castsi256_si128(rounded),
                                      _mm256_extracti128_si256(rounded, 1)));
  }
};

struct SimdF64 : Avx2Blocking {
  using Scalar = double;
  using V = __m256d;
  static constexpr int kLanes = 4;
  static V load(const double* p) { return _mm256_loadu_pd(p); }
  static void store(double* p, V v) { _mm256_storeu_pd(p, v); }
  static V broadcast(double x) { return _mm256_set1_pd(x); }
  static V zero() { return _mm256_setzero_pd(); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static V in_register(V v) {
    asm("" : "+x"(v));
    return v;
  }
  static V add(V a, V b) { return _mm256_add_pd(a, b); }
  static V sub(V a, V b) { return _mm256_sub_pd(a, b); }
  static V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  static void interleave(V even, V odd, V& low, V& high) {
    const V first = _mm256_unpacklo_pd(even, odd);
    const V second = _mm256_unpackhi_pd(even, odd);
    low = _mm256_permute2f128_pd(first, second, 0x20);
    high = _mm256_permute2f128_pd(first, second, 0x31);
  }
  static void deinterleave(V a, V b, V& even, V& odd) {
    even = _mm256_permute4x64_pd(_mm256_unpacklo_pd(a, b), _MM_SHUFFLE(3, 1, 2, 0));
    odd = _mm256_permute4x64_pd(_mm256_unpackhi_pd(a, b), _MM_SHUFFLE(3, 1, 2, 0));
  }
  static double sum(V v) {
    const __m128d halves = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(halves, _mm_unpackhi_pd(halves, halves)));
  }
  static V widen(const double* p) { return load(p); }
  static void narrow(double* p, V v) { store(p, v); }
};

}  // namespace
}  // namespace mula::cpu

#include "plane_kernels_impl.h"

namespace mula::cpu {

const PlaneKernels& plane_kernels_avx2() {
  static const PlaneKernels kernels = make_plane_kernels("avx2");
  return kernels;
}

}  // namespace mula::cpu
