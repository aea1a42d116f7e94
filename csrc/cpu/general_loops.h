// Part of the per-plane CPU kernels (see plane_kernels_impl.h): the scalar
// loops that serve every shape the register-blocked tiles do not.
#pragma once

#include <cstdint>

#include "plane_staging.h"

namespace mula::cpu {
namespace {

// ---------------------------------------------------------------------------
// General loops: any filter size, stride, dilation and padding.

// dst[c0, c0 + NV * L) += the taps of correlate_general for output row r
// (columns[j]: where filter column j's reads start, tap_column_start). The
// NV vectors stay in registers through every tap, so each multiply-add
// loads only its input, where a tap at a time over whole rows stored and
// reloaded the outputs at every tap.
template <typename Vec, int NV>
void correlate_general_vectors(const typename Vec::Scalar* in, int64_t in_stride,
                               const typename Vec::Scalar* w, const ConvShape& s,
                               const int64_t* columns, int64_t r, int64_t c0,
                               typename Vec::Scalar* dst) {
  using Scalar = typename Vec::Scalar;
  constexpr int64_t L = Vec::kLanes;
  typename Vec::V acc[NV];
  for (int k = 0; k < NV; ++k) acc[k] = Vec::load(dst + c0 + k * L);
  for (int64_t i = 0; i < s.kernel_h; ++i) {
    const Scalar* row = in + (r * s.stride_h + i * s.dilation_h) * in_stride + c0;
    for (int64_t j = 0; j < s.kernel_w; ++j) {
      const typename Vec::V tap = Vec::broadcast(w[i * s.kernel_w + j]);
      const Scalar* src = row + columns[j];
      for (int k = 0; k < NV; ++k) acc[k] = Vec::fma(tap, Vec::load(src + k * L), acc[k]);
    }
  }
  for (int k = 0; k < NV; ++k) Vec::store(dst + c0 + k * L, acc[k]);
}

// out[r][c] += sum_{i,j} w[i][j] * in[r * sh + i * dh][c * sw + j * dw],
// the input staged by stage_input_plane; each output adds its taps in the
// order of (i, j).
template <typename Acc>
void correlate_general(const Acc* in, int64_t in_stride, const Acc* w, const ConvShape& s, Acc* out,
                       int64_t out_stride) {
  using Vec = SimdFor<Acc>;
  constexpr int64_t L = Vec::kLanes;
  // Once per plane: with a column stride each start costs two divisions.
  Scratch<int64_t> column_starts(s.kernel_w);
  int64_t* columns = column_starts.get();
  for (int64_t j = 0; j < s.kernel_w; ++j) columns[j] = tap_column_start(s, in_stride, j);
  for (int64_t r = 0; r < s.out_height; ++r) {
    Acc* dst = out + r * out_stride;
    int64_t c = 0;
    for (; c + 4 * L <= s.out_width; c += 4 * L) {
      correlate_general_vectors<Vec, 4>(in, in_stride, w, s, columns, r, c, dst);
    }
    for (; c + L <= s.out_width; c += L) {
      correlate_general_vectors<Vec, 1>(in, in_stride, w, s, columns, r, c, dst);
    }
    for (; c < s.out_width; ++c) {
      Acc sum = dst[c];
      for (int64_t i = 0; i < s.kernel_h; ++i) {
        const Acc* row = in + (r * s.stride_h + i * s.dilation_h) * in_stride + c;
        for (int64_t j = 0; j < s.kernel_w; ++j) {
          sum += w[i * s.kernel_w + j] * row[columns[j]];
        }
      }
      dst[c] = sum;
    }
  }
}

// grad_w[i][j] = sum over output pixels of grad_output times the input
// pixel that tap (i, j) reads. Each row's products go into two vectors of
// lanes in turn and a scalar for the row's last few, summed in a fixed
// order at the end: as reproducible as one scalar sum, and not a chain of
// dependent adds, one per pixel (with it a 9x9 depthwise backward took 18x
// its forward).
template <typename Acc>
void weight_grad_general(const Acc* in, int64_t in_stride, const Acc* go, int64_t go_stride,
                         const ConvShape& s, Acc* grad_w) {
  using Vec = SimdFor<Acc>;
  constexpr int64_t L = Vec::kLanes;
  for (int64_t i = 0; i < s.kernel_h; ++i) {
    for (int64_t j = 0; j < s.kernel_w; ++j) {
      typename Vec::V even = Vec::zero(), odd = Vec::zero();
      Acc rest = 0;
      const int64_t column = tap_column_start(s, in_stride, j);
      for (int64_t r = 0; r < s.out_height; ++r) {
        const Acc* src = in + (r * s.stride_h + i * s.dilation_h) * in_stride + column;
        const Acc* grad = go + r * go_stride;
        int64_t c = 0;
        for (; c + 2 * L <= s.out_width; c += 2 * L) {
          even = Vec::fma(Vec::load(grad + c), Vec::load(src + c), even);
          odd = Vec::fma(Vec::load(grad + c + L), Vec::load(src + c + L), odd);
        }
        for (; c < s.out_width; ++c) rest += grad[c] * src[c];
      }
      grad_w[i * s.kernel_w + j] = Vec::sum(Vec::add(even, odd)) + rest;
    }
  }
}

// grad_in[y][x] += sum over taps (i, j) and the output pixel (r, c) they
// map to, r * sh = y + ph - i * dh and c * sw = x + pw - j * dw: a gather.
template <typename Acc>
void input_grad_general(const Acc* go, int64_t go_stride, const Acc* w, const ConvShape& s,
                        Acc* grad_in, int64_t grad_in_stride) {
  for (int64_t i = 0; i < s.kernel_h; ++i) {
    for (int64_t y = 0; y < s.in_height; ++y) {
      const int64_t t = y + s.pad_h - i * s.dilation_h;
      if (t < 0 || t % s.stride_h != 0 || t / s.stride_h >= s.out_height) continue;
      const Acc* grad = go + (t / s.stride_h) * go_stride;
      Acc* dst = grad_in + y * grad_in_stride;
      for (int64_t j = 0; j < s.kernel_w; ++j) {
        const Acc tap = w[i * s.kernel_w + j];
        const int64_t shift = s.pad_w - j * s.dilation_w;  // c * sw = x + shift
        int64_t x = shift < 0 ? -shift : 0;
        const int64_t misalignment = (x + shift) % s.stride_w;
        if (misalignment != 0) x += s.stride_w - misalignment;
        for (int64_t c = (x + shift) / s.stride_w; x < s.in_width && c < s.out_width;
             x += s.stride_w, ++c) {
          dst[x] += tap * grad[c];
        }
      }
    }
  }
}

}  // namespace
}  // namespace mula::cpu
