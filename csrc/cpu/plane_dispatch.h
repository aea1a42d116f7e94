// Part of the per-plane CPU kernels (see plane_kernels_impl.h): per plane,
// the choice between the register-blocked tiles and the general loops.
#pragma once

#include <cstdint>
#include <type_traits>

#include "blocked_kernels.h"
#include "general_loops.h"

namespace mula::cpu {
namespace {

// ---------------------------------------------------------------------------
// Dispatch between the two, per plane.

// Calls body(std::integral_constant<int, K>{}) for a register-blocked filter
// size k; false for 0 (the shape takes the general loops).
template <typename Body>
bool with_kernel_size(int k, Body&& body) {
  switch (k) {
    case 1: body(std::integral_constant<int, 1>{}); return true;
    case 3: body(std::integral_constant<int, 3>{}); return true;
    case 5: body(std::integral_constant<int, 5>{}); return true;
    case 7: body(std::integral_constant<int, 7>{}); return true;
    default: return false;
  }
}

// Calls body(step) with the column dilation as the fast kernels take it.
template <typename Body>
void with_column_step(const ConvShape& s, Body&& body) {
  if (s.dilation_w == 1) {
    body(std::integral_constant<int64_t, 1>{});
  } else {
    body(s.dilation_w);
  }
}

template <typename Acc>
void correlate(const Acc* in, int64_t in_stride, const Acc* w, const ConvShape& s, int64_t rows,
               int64_t cols, Acc* out, int64_t out_stride) {
  using Vec = SimdFor<Acc>;
  const int64_t vectors = cols / Vec::kLanes;
  if (with_kernel_size(fast_kernel_size(s), [&](auto k) {
        with_column_step(s, [&](auto step) {
          correlate_fast<Vec, decltype(k)::value>(in, in_stride, w, out, out_stride, rows, vectors,
                                                  s.dilation_h, step);
        });
      })) {
    return;
  }
  if (with_kernel_size(blocked_kernel_size(s), [&](auto k) {
        correlate_strided<Vec, decltype(k)::value>(in, in_stride, w, s, out, out_stride, vectors);
      })) {
    return;
  }
  correlate_general(in, in_stride, w, s, out, out_stride);
}

template <typename Acc>
void weight_grad(const Acc* in, int64_t in_stride, const Acc* go, int64_t go_stride,
                 const ConvShape& s, int64_t cols, Acc* grad_w) {
  using Vec = SimdFor<Acc>;
  const int64_t vectors = cols / Vec::kLanes;
  if (with_kernel_size(fast_kernel_size(s), [&](auto k) {
        with_column_step(s, [&](auto step) {
          weight_grad_fast<Vec, decltype(k)::value>(in, in_stride, go, go_stride, s.out_height,
                                                    vectors, s.dilation_h, step, grad_w);
        });
      })) {
    return;
  }
  weight_grad_general(in, in_stride, go, go_stride, s, grad_w);
}

// Accumulates one grad_output plane's contribution to grad_input. go_buf is
// the staged plane with its margin; taps are flipped for the fast path.
template <typename Acc>
void input_grad(const Acc* go_buf, const Geometry& g, const Acc* taps, const ConvShape& s,
                Acc* grad_in, int64_t grad_in_stride) {
  if (fast_kernel_size(s) != 0) {
    // With the margin, the flipped correlation reads grad_output padded by
    // (k - 1) * dilation - pad, which starts pad rows and columns into the
    // staged plane.
    const Acc* padded = go_buf + s.pad_h * g.go_cols + s.pad_w;
    correlate(padded, g.go_cols, taps, s, s.in_height, g.grad_in_cols, grad_in, grad_in_stride);
    return;
  }
  input_grad_general(go_buf + g.go_top * g.go_cols + g.go_left, g.go_cols, taps, s, grad_in,
                     grad_in_stride);
}

template <typename Acc>
Acc plane_sum(const Acc* plane, int64_t stride, int64_t rows, int64_t cols) {
  // cols is whole vectors here: the staged grad_output rows end in zeros.
  using Vec = SimdFor<Acc>;
  auto sum = Vec::zero();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; c += Vec::kLanes) {
      sum = Vec::add(sum, Vec::load(plane + r * stride + c));
    }
  }
  return Vec::sum(sum);
}

}  // namespace
}  // namespace mula::cpu
