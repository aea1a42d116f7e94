// Part of the per-plane CPU kernels (see plane_kernels_impl.h): per plane,
// the choice between the register-blocked tiles and the general loops.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
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

// out += in (x) w; with `init`, out = *init + in (x) w (the fast tiles start
// their accumulators at *init in registers: no pass that fills out first).
template <typename Acc>
void correlate(const Acc* in, int64_t in_stride, const Acc* w, const ConvShape& s, int64_t rows,
               int64_t cols, Acc* out, int64_t out_stride, const Acc* init = nullptr) {
  using Vec = SimdFor<Acc>;
  const int64_t vectors = cols / Vec::kLanes;
  if (with_kernel_size(fast_kernel_size(s), [&](auto k) {
        with_column_step(s, [&](auto step) {
          correlate_fast<Vec, decltype(k)::value>(in, in_stride, w, out, out_stride, rows, vectors,
                                                  s.dilation_h, step, init);
        });
      })) {
    return;
  }
  if (with_kernel_size(blocked_kernel_size(s), [&](auto k) {
        correlate_strided<Vec, decltype(k)::value>(in, in_stride, w, s, out, out_stride, vectors,
                                                   init);
      })) {
    return;
  }
  if (init != nullptr) fill(out, rows * out_stride, *init);
  correlate_general(in, in_stride, w, s, out, out_stride);
}

// Whether a depthwise bfloat16 plane, in a build whose float vectors multiply
// bfloat16 pairs, runs on tap pairs (correlate_input_row's BFloat16Pair
// overload, blocked_kernels.h): a stride-1 3x3, 5x5 or
// 7x7 filter (a 1x1 filter has no pair).
inline bool tap_pairs(const ConvShape& s) { return fast_kernel_size(s) > 1; }

// correlate on tap pairs: `pairs` the staged plane's tap pairs
// (stage_tap_pairs or pair_neighbours), w the filter's pair_taps.
template <typename Acc>
void correlate_tap_pairs(const BFloat16Pair* pairs, int64_t in_stride, const BFloat16Pair* w,
                         const ConvShape& s, int64_t rows, int64_t cols, Acc* out,
                         int64_t out_stride, const Acc* init) {
  using Vec = SimdFor<Acc>;
  with_kernel_size(fast_kernel_size(s), [&](auto k) {
    with_column_step(s, [&](auto step) {
      correlate_fast<Vec, decltype(k)::value>(pairs, in_stride, w, out, out_stride, rows,
                                              cols / Vec::kLanes, s.dilation_h, step, init);
    });
  });
}

// Whether a convolution that is not depthwise takes the channel-blocked
// tiles (correlate_channels) for its forward and grad_input.
inline bool channel_blocked(const ConvShape& s) {
  return !is_depthwise(s) && blocked_kernel_size(s) != 0;
}

// Calls body(o, std::integral_constant<int, OB>{}) for the blocks of OB
// consecutive output planes that cover `channels`: the largest blocks first.
template <typename Vec, typename Body>
void for_each_channel_block(int64_t channels, Body&& body) {
  int64_t o = 0;
  const auto blocks_of = [&](auto block) {
    for (; o + decltype(block)::value <= channels; o += decltype(block)::value) body(o, block);
  };
  blocks_of(std::integral_constant<int, Vec::kChannelBlock>{});
  blocks_of(std::integral_constant<int, 4>{});
  blocks_of(std::integral_constant<int, 2>{});
  blocks_of(std::integral_constant<int, 1>{});
}

// out_o = start_o + sum_p w_o,p (x) in_p (start null: 0) for `channels`
// output planes (out_plane_stride apart) over `planes` staged planes
// (plane_stride apart), the filters laid out [o][p][tap]: channel-blocked
// tiles. The planes and filters hold Acc, or BFloat16Pair (p then runs over
// pairs); O is the accumulation type, or the output's storage type where its
// rows are whole vectors (each sum then rounds straight into the output).
template <typename Acc, typename E, typename O>
void correlate_channels(const E* in, int64_t in_stride, int64_t plane_stride, int64_t planes,
                        const E* w, const ConvShape& s, int64_t rows, int64_t cols,
                        int64_t channels, const Acc* start, O* out, int64_t out_stride,
                        int64_t out_plane_stride) {
  using Vec = SimdFor<Acc>;
  const int64_t vectors = cols / Vec::kLanes;
  with_kernel_size(blocked_kernel_size(s), [&](auto k) {
    constexpr int K = decltype(k)::value;
    ColumnPhases columns{};
    for (int j = 0; j < K; ++j) columns.start[j] = tap_column_start(s, in_stride, j);
    // Each block's filters packed [p][tap][o]: the taps a tile step
    // broadcasts lie side by side, at constant offsets from one pointer
    // (the block's filters read at o * w_stride took a register each, which
    // the tiles spilled).
    const int64_t w_stride = planes * K * K;
    Scratch<E> packed(channels * w_stride);
    for_each_channel_block<Vec>(channels, [&](int64_t o, auto block) {
      constexpr int OB = decltype(block)::value;
      E* dst = packed.get() + o * w_stride;
      for (int64_t t = 0; t < w_stride; ++t) {
        for (int b = 0; b < OB; ++b) dst[t * OB + b] = w[(o + b) * w_stride + t];
      }
    });
    for_each_channel_block<Vec>(channels, [&](int64_t o, auto block) {
      correlate_channel_block<Vec, K, decltype(block)::value>(
          in, in_stride, plane_stride, planes, s, columns, packed.get() + o * w_stride,
          out + o * out_plane_stride, out_stride, out_plane_stride,
          start != nullptr ? start + o : nullptr, rows, vectors);
    });
  });
}

// The filters of `planes` staged input planes (plane_stride apart) against
// `outs` staged grad_output planes (go_plane_stride apart), into grad_w laid
// out [o][p][tap]. The planes hold Acc, or BFloat16Bits (for the fast path
// only; then the last vector of a row may reach 16 columns past cols, which
// must read as zeros in go and in).
template <typename Acc, typename E>
void weight_grad(const E* in, int64_t in_stride, int64_t plane_stride, int64_t planes,
                 const E* go, int64_t go_stride, int64_t go_plane_stride, int64_t outs,
                 const ConvShape& s, int64_t cols, Acc* grad_w) {
  using Vec = SimdFor<Acc>;
  constexpr int L = pixels_per_vector<Vec, E>;
  const int64_t vectors = (cols + L - 1) / L;
  if (with_kernel_size(fast_kernel_size(s), [&](auto k) {
        with_column_step(s, [&](auto step) {
          weight_grad_fast<Vec, decltype(k)::value>(in, in_stride, plane_stride, planes, go,
                                                    go_stride, go_plane_stride, outs,
                                                    s.out_height, vectors, s.dilation_h, step,
                                                    grad_w);
        });
      })) {
    return;
  }
  const int64_t taps = s.kernel_h * s.kernel_w;
  if constexpr (std::is_same_v<E, Acc>) {
    for (int64_t o = 0; o < outs; ++o) {
      for (int64_t p = 0; p < planes; ++p) {
        weight_grad_general(in + p * plane_stride, in_stride, go + o * go_plane_stride,
                            go_stride, s, grad_w + (o * planes + p) * taps);
      }
    }
  } else {
    // Pixel pairs have no general loops: a caller that sent a shape without
    // a fast kernel here would get grad_w unwritten. Stop instead.
    std::fprintf(stderr, "mula_ops: internal error: bfloat16 pixel pairs for a %ldx%ld filter\n",
                 static_cast<long>(s.kernel_h), static_cast<long>(s.kernel_w));
    std::abort();
  }
}

// Accumulates one grad_output plane's contribution to grad_input; with
// `init`, grad_in = *init + that contribution (as correlate). go_buf is the
// staged plane with its margin; taps are flipped for the fast path.
template <typename Acc>
void input_grad(const Acc* go_buf, const Geometry& g, const Acc* taps, const ConvShape& s,
                Acc* grad_in, int64_t grad_in_stride, const Acc* init = nullptr) {
  if (fast_kernel_size(s) != 0) {
    // With the margin, the flipped correlation reads grad_output padded by
    // (k - 1) * dilation - pad, which starts pad rows and columns into the
    // staged plane.
    const Acc* padded = go_buf + s.pad_h * g.go_cols + s.pad_w;
    correlate(padded, g.go_cols, taps, s, s.in_height, g.grad_in_cols, grad_in, grad_in_stride,
              init);
    return;
  }
  if (init != nullptr) fill(grad_in, s.in_height * grad_in_stride, *init);
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
