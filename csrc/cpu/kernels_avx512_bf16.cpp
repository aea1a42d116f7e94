// The per-plane kernels built for AVX-512 with AVX512-BF16: the AVX-512
// build (avx512_vectors.h) whose bfloat16 convolutions that are not
// depthwise multiply in bfloat16 pairs (vdpbf16ps: two exact products
// added to a float accumulator per lane, twice the work of a float
// multiply-add). Only bfloat16 is compiled here; the other dtypes run the
// AVX-512 build's kernels. The target pragma applies to everything after
// it, so this translation unit may only run once select_plane_kernels() has
// checked the CPU.
#include "plane_kernels.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#pragma GCC target("avx512f,avx512bw,avx512bf16,avx2,fma,f16c")

#include "avx512_vectors.h"

namespace mula::cpu {
namespace {

struct SimdF32 : Avx512F32 {
  using Avx512F32::broadcast;
  using Avx512F32::fma;
  using Avx512F32::in_register;
  using Avx512F32::load;
  using Avx512F32::store;
  // 16 lanes of two bfloat16 values each.
  struct PairVector {
    __m512i bits;
  };
  // 16 pixels of two planes (BFloat16Pair), or 32 pixels of one.
  static PairVector load(const BFloat16Pair* p) { return {_mm512_loadu_si512(p)}; }
  static PairVector load(const BFloat16Bits* p) { return {_mm512_loadu_si512(p)}; }
  static PairVector broadcast(BFloat16Pair x) {
    return {_mm512_set1_epi32(static_cast<int>(x.bits))};
  }
  // (a[k], b[k]) for 16 values of each.
  static PairVector pair_up(const BFloat16Bits* a, const BFloat16Bits* b) {
    const __m512i low = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a)));
    const __m512i high = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b)));
    return {_mm512_or_si512(low, _mm512_slli_epi32(high, 16))};
  }
  // The same from floats that hold bfloat16 values (their high halves).
  static PairVector pair_up(const float* a, const float* b) {
    const __m512i low = _mm512_srli_epi32(_mm512_castps_si512(_mm512_loadu_ps(a)), 16);
    const __m512i high = _mm512_castps_si512(_mm512_loadu_ps(b));
    return {_mm512_or_si512(low, _mm512_and_si512(high, _mm512_set1_epi32(~0xffff)))};
  }
  static void store(BFloat16Pair* p, PairVector v) { _mm512_storeu_si512(p, v.bits); }
  // (0, low half) of each lane: one bfloat16 value of a pair on its own.
  static PairVector low_to_high(PairVector v) { return {_mm512_slli_epi32(v.bits, 16)}; }
  static PairVector in_register(PairVector v) {
    asm("" : "+v"(v.bits));
    return v;
  }
  // c + a.high * b.high + a.low * b.low per lane: the products are exact in
  // float; the instruction treats bfloat16 subnormals as zero and flushes a
  // subnormal sum to zero.
  static V fma(PairVector a, PairVector b, V c) {
    return _mm512_dpbf16_ps(c, reinterpret_cast<__m512bh>(a.bits), reinterpret_cast<__m512bh>(b.bits));
  }
};

}  // namespace
}  // namespace mula::cpu

#include "plane_kernels_impl.h"

namespace mula::cpu {

const PlaneKernels& plane_kernels_avx512_bf16() {
  static const PlaneKernels kernels = make_plane_kernels<&plane_kernels_avx512>("avx512_bf16");
  return kernels;
}

}  // namespace mula::cpu
