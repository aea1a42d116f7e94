// The AVX-512 vector types (16 float or 8 double lanes, 32 registers) of
// the two AVX-512 builds, kernels_avx512.cpp and kernels_avx512_bf16.cpp.
// Include it after the build's target pragma.
#pragma once

// GCC 12's AVX-512 headers start their intrinsics from an "undefined"
// register, which -W(maybe-)uninitialized reports wherever one is inlined.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include "storage_types.h"

namespace mula::cpu {
namespace {

// What the float and double vectors share: the register blocking (the
// register file holds the same number of vectors of either).
struct Avx512Blocking {
  // Forward tiles of 4 rows x 4 vectors: 16 accumulators, 4 taps, 1 input.
  static constexpr int kRowBlock = 4;
  static constexpr int kColBlock = 4;
  // Weight gradient: 3 filter rows x 7 taps = 21 accumulators.
  static constexpr int kWeightRowBlock = 3;
  // Channel-blocked tiles (not depthwise): 6 output planes x 2 rows x 2
  // vectors = 24 accumulators; the weight gradient blocks up to 4
  // grad_output planes by input planes, 24 accumulators (1x1: 4 x 6, a GEMM
  // micro-kernel).
  static constexpr int kChannelBlock = 6;
  static constexpr int kChannelRowBlock = 2;
  static constexpr int kWeightAccumulators = 24;
  static constexpr int kWeightChannelBlock = 4;
};

struct Avx512F32 : Avx512Blocking {
  using Scalar = float;
  using V = __m512;
  static constexpr int kLanes = 16;
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V broadcast(float x) { return _mm512_set1_ps(x); }
  static V zero() { return _mm512_setzero_ps(); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  // Makes the compiler keep a loaded vector in a register: otherwise it
  // folds the load into every multiply-add that uses it, loading it again.
  static V in_register(V v) {
    asm("" : "+v"(v));
    return v;
  }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  // The even and odd entries of the 2 * kLanes values in a, then b.
  static void deinterleave(V a, V b, V& even, V& odd) {
    const __m512i even_index =
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd_index = _mm512_add_epi32(even_index, _mm512_set1_epi32(1));
    even = _mm512_permutex2var_ps(a, even_index, b);
    odd = _mm512_permutex2var_ps(a, odd_index, b);
  }
  // The inverse: 2 * kLanes values even[0], odd[0], even[1], ... into low, high.
  static void interleave(V even, V odd, V& low, V& high) {
    const __m512i low_index =
        _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i high_index = _mm512_add_epi32(low_index, _mm512_set1_epi32(8));
    low = _mm512_permutex2var_ps(even, low_index, odd);
    high = _mm512_permutex2var_ps(even, high_index, odd);
  }
  // Halving tree in a fixed order, lane i + lane i + width for width 8, 4,
  // 2, 1, in registers (GCC 12's _mm512_reduce_add_ps trips
  // -Wmaybe-uninitialized inside its own header).
  static float sum(V v) {
    const __m256 high = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    const __m256 eights = _mm256_add_ps(_mm512_castps512_ps256(v), high);
    const __m128 fours = _mm_add_ps(_mm256_castps256_ps128(eights), _mm256_extractf128_ps(eights, 1));
    const __m128 pairs = _mm_add_ps(fours, _mm_movehl_ps(fours, fours));
    return _mm_cvtss_f32(_mm_add_ss(pairs, _mm_shuffle_ps(pairs, pairs, 1)));
  }
  // sums[i] = sum(v[i]) for kLanes vectors at once: the same tree on all
  // of them, each level adding the halves of two vectors' partial sums in
  // one instruction (45 instructions for 16 sums, where sum() takes 8
  // each), so every sum has sum()'s bits.
  static void sum_each(const V* v, float* sums) {
    V eights[8], fours[4], pairs[2];
    for (int i = 0; i < 8; ++i) {  // blocks: v[2i] lanes i + i + 8, then v[2i + 1]'s
      eights[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
                                _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
    }
    for (int i = 0; i < 4; ++i) {  // block m: v[4i + m]'s lanes i + i + 4
      fours[i] = _mm512_add_ps(_mm512_shuffle_f32x4(eights[2 * i], eights[2 * i + 1], 0x88),
                               _mm512_shuffle_f32x4(eights[2 * i], eights[2 * i + 1], 0xDD));
    }
    for (int i = 0; i < 2; ++i) {  // block m: lanes i + i + 2 of v[8i + m], then of v[8i + 4 + m]
      pairs[i] = _mm512_add_ps(_mm512_shuffle_ps(fours[2 * i], fours[2 * i + 1], 0x44),
                               _mm512_shuffle_ps(fours[2 * i], fours[2 * i + 1], 0xEE));
    }
    // Lane 4m + t: the sum of v[4t + m].
    alignas(64) float lanes[kLanes];
    _mm512_store_ps(lanes, _mm512_add_ps(_mm512_shuffle_ps(pairs[0], pairs[1], 0x88),
                                         _mm512_shuffle_ps(pairs[0], pairs[1], 0xDD)));
    for (int m = 0; m < 4; ++m) {
      for (int t = 0; t < 4; ++t) sums[4 * t + m] = lanes[4 * m + t];
    }
  }
  // Storage conversions, rounding as csrc/half_rounding.h does: F16C's
  // round-to-nearest-even for float16; for bfloat16 the same integer
  // rounding, NaN as 0x7fc0.
  static V widen(const float* p) { return load(p); }
  static V widen(const HalfBits* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static V widen(const BFloat16Bits* p) {
    const __m512i bits = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(bits, 16));
  }
  static void narrow(float* p, V v) { store(p, v); }
  static void narrow(HalfBits* p, V v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                        _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  static void narrow(BFloat16Bits* p, V v) {
    const __m512i bits = _mm512_castps_si512(v);
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    __m512i rounded =
        _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff))), 16);
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    rounded = _mm512_mask_mov_epi32(rounded, nan, _mm512_set1_epi32(0x7fc0));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(rounded));
  }
};

struct SimdF64 : Avx512Blocking {
  using Scalar = double;
  using V = __m512d;
  static constexpr int kLanes = 8;
  static V load(const double* p) { return _mm512_loadu_pd(p); }
  static void store(double* p, V v) { _mm512_storeu_pd(p, v); }
  static V broadcast(double x) { return _mm512_set1_pd(x); }
  static V zero() { return _mm512_setzero_pd(); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static V in_register(V v) {
    asm("" : "+v"(v));
    return v;
  }
  static V add(V a, V b) { return _mm512_add_pd(a, b); }
  static V sub(V a, V b) { return _mm512_sub_pd(a, b); }
  static V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  static void deinterleave(V a, V b, V& even, V& odd) {
    const __m512i even_index = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
    const __m512i odd_index = _mm512_add_epi64(even_index, _mm512_set1_epi64(1));
    even = _mm512_permutex2var_pd(a, even_index, b);
    odd = _mm512_permutex2var_pd(a, odd_index, b);
  }
  static void interleave(V even, V odd, V& low, V& high) {
    const __m512i low_index = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
    const __m512i high_index = _mm512_add_epi64(low_index, _mm512_set1_epi64(4));
    low = _mm512_permutex2var_pd(even, low_index, odd);
    high = _mm512_permutex2var_pd(even, high_index, odd);
  }
  static double sum(V v) {
    const __m256d fours = _mm256_add_pd(_mm512_castpd512_pd256(v), _mm512_extractf64x4_pd(v, 1));
    const __m128d pairs = _mm_add_pd(_mm256_castpd256_pd128(fours), _mm256_extractf128_pd(fours, 1));
    return _mm_cvtsd_f64(_mm_add_sd(pairs, _mm_unpackhi_pd(pairs, pairs)));
  }
  static V widen(const double* p) { return load(p); }
  static void narrow(double* p, V v) { store(p, v); }
};

}  // namespace
}  // namespace mula::cpu
