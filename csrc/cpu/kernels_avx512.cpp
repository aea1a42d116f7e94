// The per-plane kernels built for AVX-512 (avx512_vectors.h). The target
// pragma applies to everything after it, so this translation unit may only
// run once select_plane_kernels() has checked the CPU.
#include "plane_kernels.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#pragma GCC target("avx512f,avx2,fma,f16c")

#include "avx512_vectors.h"

namespace mula::cpu {
namespace {

using SimdF32 = Avx512F32;

}  // namespace
}  // namespace mula::cpu

#include "plane_kernels_impl.h"

namespace mula::cpu {

const PlaneKernels& plane_kernels_avx512() {
  static const PlaneKernels kernels = make_plane_kernels("avx512");
  return kernels;
}

}  // namespace mula::cpu
