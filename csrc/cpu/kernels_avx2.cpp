// The per-plane kernels built for AVX2 + FMA (8 float lanes, 16 registers).
// The target pragma applies to everything after it, so this translation
// unit may only run once select_plane_kernels() has checked the CPU.
#include "plane_kernels.h"

#include <immintrin.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#pragma GCC target("avx2,fma")

namespace mula::cpu {
namespace {

struct Simd {
  using V = __m256;
  static constexpr int kLanes = 8;
  // Forward tiles of 3 rows x 4 vectors: 12 accumulators, 3 taps, 1 input.
  static constexpr int kRowBlock = 3;
  static constexpr int kColBlock = 4;
  // Weight gradient: one filter row, 7 accumulators.
  static constexpr int kWeightRowBlock = 1;
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
  static float sum(V v) {
    const __m128 halves = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 pairs = _mm_add_ps(halves, _mm_movehl_ps(halves, halves));
    return _mm_cvtss_f32(_mm_add_ss(pairs, _mm_shuffle_ps(pairs, pairs, 1)));
  }
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
