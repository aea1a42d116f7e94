// Part of the per-plane CPU kernels (see plane_kernels_impl.h): the
// register-blocked matrix product of planes, out_o = start_o + sum_p u_op in_p
// over whole planes of pixels, which the Winograd tiles run for each entry of
// their transforms and a pointwise convolution runs on its planes as they
// are stored.
//
// A convolution with a 1x1 filter, stride 1 and no padding that is not
// depthwise is, for each sample and group, that product: the output planes
// (O x HW) are the filters (O x P) times the input planes (P x HW), and
// grad_input the transposed filters times grad_output. Read in place (no
// staged plane, no accumulator plane), it runs at the speed of its products.
// Each output starts at its start value and adds its products in the order
// of p, as the channel-blocked tiles do, so results match theirs bitwise.
#pragma once

#include <cstdint>

#include "plane_dispatch.h"

namespace mula::cpu {
namespace {

// m[o][t] = start[o] + sum_p u[o * u_stride + p] * v[p * v_stride + t] for OB
// output planes and NV vectors of pixels (start null: 0).
template <typename Vec, int OB, int NV>
void multiply_tiles(const typename Vec::Scalar* u, int64_t u_stride, int64_t planes,
                    const typename Vec::Scalar* v, int64_t v_stride, typename Vec::Scalar* m,
                    int64_t m_stride, const typename Vec::Scalar* start = nullptr) {
  using V = typename Vec::V;
  V acc[OB][NV];
  for (int o = 0; o < OB; ++o) {
    const V first = start != nullptr ? Vec::broadcast(start[o]) : Vec::zero();
    for (int k = 0; k < NV; ++k) acc[o][k] = first;
  }
  for (int64_t p = 0; p < planes; ++p) {
    V x[NV];
    for (int k = 0; k < NV; ++k) {
      x[k] = Vec::in_register(Vec::load(v + p * v_stride + k * Vec::kLanes));
    }
    for (int o = 0; o < OB; ++o) {
      const V w = Vec::broadcast(u[o * u_stride + p]);
      for (int k = 0; k < NV; ++k) acc[o][k] = Vec::fma(w, x[k], acc[o][k]);
    }
  }
  for (int o = 0; o < OB; ++o) {
    for (int k = 0; k < NV; ++k) Vec::store(m + o * m_stride + k * Vec::kLanes, acc[o][k]);
  }
}

// Whether a convolution is a matrix product of its planes.
inline bool pointwise_product(const ConvShape& s) {
  return !is_depthwise(s) && s.kernel_h == 1 && s.kernel_w == 1 && s.stride_h == 1 &&
         s.stride_w == 1 && s.pad_h == 0 && s.pad_w == 0;
}

// out[o * pixels + x] = start[o] + sum_p u[o * u_stride + p] * in[p * pixels + x]
// for `channels` output planes of `pixels` pixels over `planes` input planes
// (start null: 0). The pixels run in bands whose input planes fit in a
// quarter of L2 (kBandBytes); within a band each block of output planes
// runs along the pixels, so that the band's input stays in L2 for all of
// them. The last pixels that fill no whole vector go through a staged
// vector per input plane: those pixels, zeros after them.
template <typename Acc>
void multiply_planes(const Acc* u, int64_t u_stride, int64_t planes, const Acc* in,
                     int64_t pixels, int64_t channels, const Acc* start, Acc* out) {
  using Vec = SimdFor<Acc>;
  constexpr int64_t L = Vec::kLanes;
  constexpr int NV = 2 * Vec::kChannelRowBlock;
  constexpr int64_t kBandBytes = 256 << 10;
  const int64_t whole = pixels / L * L;
  const int64_t left = pixels - whole;
  const int64_t band =
      max_of(NV * L, kBandBytes / (max_of(planes, 1) * int64_t(sizeof(Acc))) / (NV * L) * (NV * L));
  Scratch<Acc> staged(left != 0 ? (planes + Vec::kChannelBlock) * L : 0);
  Acc* tail = staged.get();
  Acc* tail_out = tail + planes * L;
  if (left != 0) {
    for (int64_t p = 0; p < planes; ++p) {
      for (int64_t x = 0; x < L; ++x) tail[p * L + x] = x < left ? in[p * pixels + whole + x] : 0;
    }
  }
  for (int64_t first = 0; first < whole; first += band) {
    const int64_t last = min_of(first + band, whole);
    for_each_channel_block<Vec>(channels, [&](int64_t o, auto block) {
      constexpr int OB = decltype(block)::value;
      const Acc* uo = u + o * u_stride;
      const Acc* so = start != nullptr ? start + o : nullptr;
      Acc* mo = out + o * pixels;
      int64_t x = first;
      for (; x + NV * L <= last; x += NV * L) {
        multiply_tiles<Vec, OB, NV>(uo, u_stride, planes, in + x, pixels, mo + x, pixels, so);
      }
      for (; x < last; x += L) {
        multiply_tiles<Vec, OB, 1>(uo, u_stride, planes, in + x, pixels, mo + x, pixels, so);
      }
    });
  }
  if (left != 0) {
    for_each_channel_block<Vec>(channels, [&](int64_t o, auto block) {
      constexpr int OB = decltype(block)::value;
      multiply_tiles<Vec, OB, 1>(u + o * u_stride, u_stride, planes, tail, L, tail_out, L,
                                 start != nullptr ? start + o : nullptr);
      for (int b = 0; b < OB; ++b) {
        for (int64_t i = 0; i < left; ++i) out[(o + b) * pixels + whole + i] = tail_out[b * L + i];
      }
    });
  }
}

}  // namespace
}  // namespace mula::cpu
