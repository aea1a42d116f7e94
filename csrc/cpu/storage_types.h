// Part of the per-plane CPU kernels (see plane_kernels_impl.h): the storage
// types of the four dtypes and their conversions to and from the type the
// kernels accumulate in (float, or double for float64).
#pragma once

#include <cstdint>

#include "../half_rounding.h"

namespace mula::cpu {
namespace {

// Layout-compatible with c10::Half and c10::BFloat16 (a uint16_t each).
struct HalfBits {
  uint16_t bits;
};
struct BFloat16Bits {
  uint16_t bits;
};
// Two bfloat16 values of neighbouring reduction terms (two input planes at
// one pixel, or one filter tap of two planes), the first in the low half:
// the operand layout of AVX512-BF16's dot product (kernels_avx512_bf16.cpp).
struct BFloat16Pair {
  uint32_t bits;
};

// Conversions between storage and accumulation types; rounding to the half
// types is round-to-nearest-even, as in c10 (csrc/half_rounding.h).
inline float to_acc(float value) { return value; }
inline double to_acc(double value) { return value; }
inline float to_acc(BFloat16Bits value) { return bfloat16_to_float(value.bits); }
inline float to_acc(HalfBits value) { return half_to_float(value.bits); }

template <typename T>
struct Storage;

template <>
struct Storage<float> {
  using Acc = float;
  static constexpr bool kIsAcc = true;
  static float from_acc(float value) { return value; }
};
template <>
struct Storage<double> {
  using Acc = double;
  static constexpr bool kIsAcc = true;
  static double from_acc(double value) { return value; }
};
template <>
struct Storage<BFloat16Bits> {
  using Acc = float;
  static constexpr bool kIsAcc = false;
  static BFloat16Bits from_acc(float value) { return {float_to_bfloat16(value)}; }
};
template <>
struct Storage<HalfBits> {
  using Acc = float;
  static constexpr bool kIsAcc = false;
  static HalfBits from_acc(float value) { return {float_to_half(value)}; }
};

template <typename T>
using AccOf = typename Storage<T>::Acc;

}  // namespace
}  // namespace mula::cpu
