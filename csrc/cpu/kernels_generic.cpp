// The per-plane kernels for any CPU: plain float "vectors" of one lane, with
// the same register blocking (the compiler may still vectorize the loops
// for the baseline instruction set).
#include "plane_kernels.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

namespace mula::cpu {
namespace {

struct Simd {
  using V = float;
  static constexpr int kLanes = 1;
  static constexpr int kRowBlock = 4;
  static constexpr int kColBlock = 4;
  static constexpr int kWeightRowBlock = 1;
  static V load(const float* p) { return *p; }
  static void store(float* p, V v) { *p = v; }
  static V broadcast(float x) { return x; }
  static V zero() { return 0.0f; }
  static V fma(V a, V b, V c) { return a * b + c; }
  static V in_register(V v) { return v; }
  static V add(V a, V b) { return a + b; }
  static float sum(V v) { return v; }
};

}  // namespace
}  // namespace mula::cpu

#include "plane_kernels_impl.h"

namespace mula::cpu {

const PlaneKernels& plane_kernels_generic() {
  static const PlaneKernels kernels = make_plane_kernels("generic");
  return kernels;
}

}  // namespace mula::cpu
