// Warp-level sums with shuffles, in a fixed order (bitwise reproducible): the
// device code's reductions (dynamic_conv_kernels.cuh).
#pragma once

#include "device_memory.cuh"
#include "device_platform.cuh"

namespace mula::cuda {

template <typename T>
__device__ __forceinline__ T warp_sum(T value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2)
    value = add(value, __shfl_down_sync(0xffffffffu, value, offset));
  return value;  // complete in lane 0
}

// Warp sums of the N values v[0 .. N - 1] (N a power of two, at most 32) in
// N - 1 + log2(32 / N) shuffles instead of 5 N: a reduce-scatter butterfly
// (at each step a lane keeps the half of its values its lane bit selects and
// adds the partner's copy of that half), then a butterfly over the groups of
// N lanes. Afterwards every lane L holds the sum over the warp of v[L % N].
// Every index is a compile-time constant (templates, not loops), so v stays in
// registers.
template <int Half, typename T, int N>
__device__ __forceinline__ T warp_scatter_half(T (&v)[N], int lane) {
  const bool upper = (lane & Half) != 0;
#pragma unroll
  for (int i = 0; i < Half; ++i) {
    // Select values, not addresses: a selected index would move v to local memory.
    const T low = v[i];
    const T high = v[i + Half];
    v[i] = add(upper ? high : low, __shfl_xor_sync(0xffffffffu, upper ? low : high, Half));
  }
  if constexpr (Half > 1) {
    return warp_scatter_half<Half / 2>(v, lane);
  } else {
    return v[0];
  }
}
template <typename T, int N>
__device__ __forceinline__ T warp_scatter_sum(T (&v)[N], int lane) {
  static_assert(N >= 2 && N <= 32 && (N & (N - 1)) == 0, "N must be a power of two up to 32");
  T total = warp_scatter_half<N / 2>(v, lane);
#pragma unroll
  for (int offset = N; offset < 32; offset *= 2)
    total = add(total, __shfl_xor_sync(0xffffffffu, total, offset));
  return total;
}

}  // namespace mula::cuda
