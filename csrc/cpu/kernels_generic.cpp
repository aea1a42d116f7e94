// The per-plane kernels for any CPU: plain scalar "vectors" of one lane,
// with the same register blocking (the compiler may still combine them into
// vectors of the baseline instruction set).
#include "plane_kernels.h"

// GCC 12's loop vectorizer turned the channel-blocked tiles' loop over
// planes into pairs of planes whose second load reads 8 bytes past the last
// staged plane (found by valgrind; a segfault where that was the end of a
// mapping). Straight-line (SLP) vectorization stays on.
#pragma GCC optimize("no-tree-loop-vectorize")

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "storage_types.h"

namespace mula::cpu {
namespace {

template <typename T>
struct ScalarSimd {
  using Scalar = T;
  using V = T;
  static constexpr int kLanes = 1;
  static constexpr int kRowBlock = 4;
  static constexpr int kColBlock = 4;
  static constexpr int kWeightRowBlock = 1;
  static constexpr int kChannelBlock = 4;
  static constexpr int kChannelRowBlock = 1;
  static constexpr int kWeightAccumulators = 12;
  static constexpr int kWeightChannelBlock = 2;
  static V load(const T* p) { return *p; }
  static void store(T* p, V v) { *p = v; }
  static V broadcast(T x) { return x; }
  static V zero() { return T(0); }
  static V fma(V a, V b, V c) { return a * b + c; }
  static V in_register(V v) { return v; }
  static V add(V a, V b) { return a + b; }
  static V sub(V a, V b) { return a - b; }
  static V mul(V a, V b) { return a * b; }
  static void deinterleave(V a, V b, V& even, V& odd) {
    even = a;
    odd = b;
  }
  static void interleave(V even, V odd, V& low, V& high) {
    low = even;
    high = odd;
  }
  static T sum(V v) { return v; }
  template <typename S>
  static V widen(const S* p) { return to_acc(*p); }
  template <typename S>
  static void narrow(S* p, V v) { *p = Storage<S>::from_acc(v); }
};

using SimdF32 = ScalarSimd<float>;
using SimdF64 = ScalarSimd<double>;

}  // namespace
}  // namespace mula::cpu

#include "plane_kernels_impl.h"

namespace mula::cpu {

const PlaneKernels& plane_kernels_generic() {
  static const PlaneKernels kernels = make_plane_kernels("generic");
  return kernels;
}

}  // namespace mula::cpu
