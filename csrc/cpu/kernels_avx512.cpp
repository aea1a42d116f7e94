// The per-plane kernels built for AVX-512 (16 float lanes, 32 registers).
// The target pragma applies to everything after it, so this translation
// unit may only run once select_plane_kernels() has checked the CPU.
#include "plane_kernels.h"

#include <immintrin.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#pragma GCC target("avx512f,avx2,fma")

namespace mula::cpu {
namespace {

struct Simd {
  using V = __m512;
  static constexpr int kLanes = 16;
  // Forward tiles of 4 rows x 4 vectors: 16 accumulators, 4 taps, 1 input.
  static constexpr int kRowBlock = 4;
  static constexpr int kColBlock = 4;
  // Weight gradient: 3 filter rows x 7 taps = 21 accumulators.
  static constexpr int kWeightRowBlock = 3;
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
  // Halving tree in a fixed order (GCC 12's _mm512_reduce_add_ps trips
  // -Wmaybe-uninitialized inside its own header).
  static float sum(V v) {
    alignas(64) float lanes[kLanes];
    _mm512_store_ps(lanes, v);
    for (int width = kLanes / 2; width > 0; width /= 2) {
      for (int i = 0; i < width; ++i) lanes[i] += lanes[i + width];
    }
    return lanes[0];
  }
};

}  // namespace
}  // namespace mula::cpu

#include "plane_kernels_impl.h"

namespace mula::cpu {

const PlaneKernels& plane_kernels_avx512() {
  static const PlaneKernels kernels = make_plane_kernels("avx512");
  return kernels;
}

}  // namespace mula::cpu
