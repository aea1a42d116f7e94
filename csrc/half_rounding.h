// float <-> float16 / bfloat16 conversions on the raw 16-bit patterns, round
// to nearest even as in c10: written once, for the CPU kernels and the CUDA
// emulator (whose __half and __nv_bfloat16 use them). Torch-free.
//
// `static`: the CPU kernels include this in translation units built for
// different instruction sets; with internal linkage the linker can never
// hand a generic build the AVX-512 copy of one of these functions.
#pragma once

#include <cstdint>
#include <cstring>

namespace mula {

static inline std::uint32_t float_bits(float value) {
  std::uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

static inline float bits_float(std::uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

static inline float bfloat16_to_float(std::uint16_t value) {
  return bits_float(std::uint32_t{value} << 16);
}

static inline std::uint16_t float_to_bfloat16(float value) {
  const std::uint32_t bits = float_bits(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;  // NaN
  return static_cast<std::uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

static inline float half_to_float(std::uint16_t value) {
  const std::uint32_t sign = std::uint32_t{value & 0x8000u} << 16;
  const std::uint32_t exponent = (value >> 10) & 0x1fu;
  const std::uint32_t mantissa = value & 0x3ffu;
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24, exact in float
    return bits_float(sign | float_bits(static_cast<float>(mantissa) * 0x1p-24f));
  }
  if (exponent == 31) {  // infinity or NaN
    return bits_float(sign | 0x7f800000u | (mantissa << 13));
  }
  return bits_float(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

static inline std::uint16_t float_to_half(float value) {
  const std::uint32_t bits = float_bits(value);
  const auto sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
  const std::uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u);  // NaN
  if (magnitude >= 0x477ff000u) {  // >= 65520 rounds to infinity
    return static_cast<std::uint16_t>(sign | 0x7c00u);
  }
  if (magnitude < 0x38800000u) {  // below 2^-14: a subnormal half
    // Scaled by 2^24 the result is an integer below 2^10; adding and
    // subtracting 2^23 rounds it to nearest-even.
    const float scaled = bits_float(magnitude) * 0x1p24f;
    const float rounded = scaled + 0x1p23f;
    return static_cast<std::uint16_t>(sign | static_cast<std::uint32_t>(rounded - 0x1p23f));
  }
  const std::uint32_t rounded = magnitude + 0xfffu + ((magnitude >> 13) & 1u);
  return static_cast<std::uint16_t>(sign | ((rounded - 0x38000000u) >> 13));
}

}  // namespace mula
