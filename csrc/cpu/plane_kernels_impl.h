// The per-plane CPU kernels, written once and compiled once per instruction
// set: each kernels_<isa>.cpp defines `SimdF32` and `SimdF64` (vector type,
// lane count, register-blocking sizes and, for float, the conversions from
// and to float16 and bfloat16) and then includes this file, which holds the
// work items (loops over planes) and the table of entry points and includes
// the parts: storage_types.h (dtypes and rounding), plane_staging.h,
// blocked_kernels.h (register-blocked tiles), general_loops.h (any shape),
// plane_dispatch.h (which of the two a plane takes), bfloat16_pairs.h,
// plane_products.h and winograd_tiles.h.
// Everything here has internal linkage, so the builds for different ISAs
// never meet at link time.
//
// Structure (it mirrors the CUDA kernels, one (sample, channel) plane each):
// - forward: stage the input plane with its zero halo (converted to the
//   accumulation type, float or double), correlate it with the plane's
//   filter into an accumulator plane that starts at the bias, round it into
//   the output (in float or double, with rows of whole vectors, the output
//   itself is the accumulator plane);
// - backward: stage the grad_output plane once, with a zero margin of the
//   filter's span (for a strided convolution spread out to the stride-1
//   grid, so that the strided backward is a stride-1 one), and from it
//   compute grad_bias (its sum), grad_weight (one reduction per filter tap
//   against the staged input plane) and grad_input (the forward correlation
//   with the flipped filter over the margin: a gather, no scatter; in place
//   when the forward's would be).
// Fast paths: a square 1x1, 3x3, 5x5 or 7x7 filter (any stride and
// dilation) in every dtype, with register-blocked tiles; when the
// convolution is not depthwise, consecutive planes of one (sample, group)
// run together through channel-blocked tiles (forward and grad_input), which
// load each staged input vector once for several output planes; in a build
// whose float vectors multiply bfloat16 pairs (bfloat16_pairs.h) a bfloat16
// convolution that is not depthwise runs them, and its weight gradient, on
// pairs of planes or pixels, and a depthwise one its forward and grad_input
// (stride 1, 3x3 to 7x7) on pairs of neighbouring taps. A 3x3 stride-1
// convolution over enough planes that is not depthwise runs its forward,
// grad_input and (on large enough planes) weight gradient on Winograd tiles
// instead (winograd_tiles.h), except in bfloat16 on pairs; a 1x1 stride-1
// unpadded one in float or double runs its forward and grad_input as a
// matrix product of the planes as they are stored (plane_products.h).
// Everything else takes the general loops, which handle any size, stride,
// dilation and padding.
//
// Within a plane every sum runs in a fixed order, whichever tile or block
// computes it, and planes never share an output element, so results do not
// depend on the thread count or on where a thread's chunk of planes begins.
#pragma once

// GCC's predictive commoning (-O3) carries the broadcast taps of one input
// row over to the next in registers, which the register-blocked tiles need
// for their accumulators: it made the 7x7 tiles spill (AVX2: 296 stack
// accesses, AVX-512: 133) and cost the forward about a quarter of its speed.
#pragma GCC optimize("no-predictive-commoning")

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "bfloat16_pairs.h"
#include "plane_dispatch.h"  // and, through it, the other parts
#include "plane_products.h"
#include "winograd_tiles.h"

namespace mula::cpu {
namespace {

// ---------------------------------------------------------------------------
// Work items.

template <typename T>
void forward_planes(const ForwardArgs& a, int64_t begin, int64_t end) {
  using Acc = AccOf<T>;
  const ConvShape& s = a.shape;
  const Geometry g(s);
  const int64_t in_per_group = s.in_channels / s.groups;
  const int64_t out_per_group = s.out_channels / s.groups;
  const int64_t taps = s.kernel_h * s.kernel_w;
  const auto* input = static_cast<const T*>(a.input);
  const auto* weight = static_cast<const T*>(a.weight);
  const auto* bias = static_cast<const T*>(a.bias);
  auto* output = static_cast<T*>(a.output);

  const bool blocked = channel_blocked(s);
  // Consecutive items of one (sample, group) run together through the
  // channel-blocked tiles, up to `block` at a time.
  const int64_t block = blocked ? SimdFor<Acc>::kChannelBlock : 1;
  const int64_t in_plane = plane_stride_of<Acc>(g.in_rows * g.in_cols);
  const int64_t acc_plane = plane_stride_of<Acc>(s.out_height * g.out_cols);
  constexpr bool paired = kPairedBFloat16<T>;
  // Pairs staged straight from storage (stage_pair_plane) where the staged
  // layout is the plain one; then no float plane or filter is staged.
  const bool pairs_from_storage = paired && blocked && s.stride_w == 1;
  const bool on_tap_pairs = paired && !blocked && tap_pairs(s);
  StagedGroup<Acc> staged(pairs_from_storage || on_tap_pairs ? 0 : in_per_group, in_plane);
  Scratch<Acc> row(g.in_cols);
  // Rows of whole vectors: one plane at a time in the accumulation type, or
  // the channel-blocked tiles in any, computed in place in the output, with
  // no accumulator plane to store from.
  const bool in_place = g.out_cols == s.out_width && (blocked || std::is_same_v<T, Acc>);
  Scratch<Acc> acc(in_place ? 0 : block * acc_plane);
  Scratch<Acc> filters(paired && blocked ? 0 : block * in_per_group * taps);
  const int64_t in_pairs = (in_per_group + 1) / 2;
  const int64_t pair_plane = plane_stride_of<BFloat16Pair>(g.in_rows * g.in_cols);
  Scratch<BFloat16Pair> staged_pairs(paired && blocked ? in_pairs * pair_plane : 0);
  Scratch<BFloat16Pair> filter_pairs(paired && blocked ? block * in_pairs * taps : 0);
  // A depthwise plane on tap pairs, staged straight from storage (then no
  // float plane is staged).
  Scratch<BFloat16Pair> staged_tap_pairs(on_tap_pairs ? g.in_rows * g.in_cols : 0);
  Scratch<BFloat16Pair> tap_pair_filter(on_tap_pairs ? s.kernel_h * ((s.kernel_w + 1) / 2) : 0);
  for (int64_t item = begin, count = 1; item < end; item += count) {
    const int64_t n = item / s.out_channels;
    const int64_t oc = item % s.out_channels;
    const int64_t group = oc / out_per_group;
    count = min_of(min_of(block, end - item), out_per_group - oc % out_per_group);
    const auto bias_of = [&](int64_t o) {
      return bias == nullptr ? Acc(0) : to_acc(bias[a.bias_per_sample ? item + o : oc + o]);
    };
    Acc* sums = acc.get();
    if constexpr (std::is_same_v<T, Acc>) {
      if (in_place) sums = output + item * s.out_height * s.out_width;
    }
    if (!blocked && in_per_group == 0) {  // else the first correlation starts at the bias
      fill(sums, s.out_height * g.out_cols, bias_of(0));
    }
    if (!(paired && blocked)) {
      load_filters(weight + item * in_per_group * taps, count * in_per_group, taps, false,
                   filters.get());
    }
    if (staged.needs_staging(n * s.groups + group)) {
      const T* planes =
          input + (n * s.in_channels + group * in_per_group) * s.in_height * s.in_width;
      const int64_t source_plane = s.in_height * s.in_width;
      if (on_tap_pairs) {
        if constexpr (paired) {
          stage_tap_pairs<SimdF32>(planes, s.in_height, s.in_width, s.pad_h, s.pad_w,
                                   s.dilation_w, staged_tap_pairs.get(), g.in_rows, g.in_cols);
        }
      } else if (pairs_from_storage) {
        if constexpr (paired) {
          for (int64_t q = 0; 2 * q < in_per_group; ++q) {
            const T* first = planes + 2 * q * source_plane;
            stage_pair_plane(first, 2 * q + 1 < in_per_group ? first + source_plane : nullptr,
                             s.in_height, s.in_width, s.pad_h, s.pad_w,
                             staged_pairs.get() + q * pair_plane, g.in_rows, g.in_cols);
          }
        }
      } else {
        for (int64_t icg = 0; icg < in_per_group; ++icg) {
          stage_input_plane(planes + icg * source_plane, s, g, staged.plane(icg), row.get());
        }
        if constexpr (paired) {
          if (blocked) {
            pair_planes(staged.plane(0), in_per_group, g.in_rows * g.in_cols, in_plane,
                        staged_pairs.get(), pair_plane);
          }
        }
      }
    }
    if (blocked) {
      Acc start[SimdFor<Acc>::kChannelBlock];
      for (int64_t o = 0; o < count; ++o) start[o] = bias_of(o);
      if constexpr (paired) {
        for (int64_t o = 0; o < count; ++o) {
          for (int64_t q = 0; 2 * q < in_per_group; ++q) {
            const T* first = weight + ((item + o) * in_per_group + 2 * q) * taps;
            pair_filters(first, 2 * q + 1 < in_per_group ? first + taps : nullptr, taps, false,
                         filter_pairs.get() + (o * in_pairs + q) * taps);
          }
        }
      }
      // Into the output itself, or into accumulator planes.
      const auto correlate_into = [&](auto* out, int64_t out_stride, int64_t out_plane) {
        if constexpr (paired) {
          correlate_channels(staged_pairs.get(), g.in_cols, pair_plane, in_pairs,
                             filter_pairs.get(), s, s.out_height, g.out_cols, count, start, out,
                             out_stride, out_plane);
        } else {
          correlate_channels(staged.plane(0), g.in_cols, in_plane, in_per_group, filters.get(), s,
                             s.out_height, g.out_cols, count, start, out, out_stride, out_plane);
        }
      };
      if (in_place) {
        correlate_into(output + item * s.out_height * s.out_width, s.out_width,
                       s.out_height * s.out_width);
      } else {
        correlate_into(acc.get(), g.out_cols, acc_plane);
      }
    } else if (on_tap_pairs) {
      if constexpr (paired) {  // depthwise: one input plane
        pair_taps(filters.get(), s.kernel_h, tap_pair_filter.get());
        const Acc start = bias_of(0);
        correlate_tap_pairs(staged_tap_pairs.get(), g.in_cols, tap_pair_filter.get(), s,
                            s.out_height, g.out_cols, sums, g.out_cols, &start);
      }
    } else {
      // One output plane (count is 1): the first input plane's correlation
      // starts at the bias.
      const Acc start = bias_of(0);
      for (int64_t icg = 0; icg < in_per_group; ++icg) {
        correlate(staged.plane(icg), g.in_cols, filters.get() + icg * taps, s, s.out_height,
                  g.out_cols, sums, g.out_cols, icg == 0 ? &start : nullptr);
      }
    }
    for (int64_t o = 0; o < count && !in_place; ++o) {
      store_plane(acc.get() + o * acc_plane, g.out_cols, s.out_height, s.out_width,
                  output + (item + o) * s.out_height * s.out_width);
    }
  }
}

// Stages grad_output plane `item` with the margin of Geometry(b), spread out
// when the backward runs on the stride-1 grid (backward_shape).
template <typename T, typename Acc>
void stage_grad_output(const T* grad_output, int64_t item, const ConvShape& s, const Geometry& g,
                       Acc* buf) {
  const T* plane = grad_output + item * s.out_height * s.out_width;
  if (spreads_grad_output(s)) {
    stage_spread_plane(plane, s, g.go_top, g.go_left, buf, g.go_rows, g.go_cols);
  } else {
    stage_plane(plane, s.out_height, s.out_width, g.go_top, g.go_left, buf, g.go_rows, g.go_cols);
  }
}

// Both backward work items compute on b = backward_shape(s): s itself, or
// for a strided convolution the stride-1 shape over the spread grad_output.
template <typename T>
void backward_output_planes_typed(const BackwardArgs& a, int64_t begin, int64_t end) {
  using Acc = AccOf<T>;
  const ConvShape& s = a.shape;
  const ConvShape b = backward_shape(s);
  const Geometry g(b);
  const bool depthwise = is_depthwise(s);
  const bool want_input = depthwise && a.grad_input != nullptr;
  const int64_t in_per_group = s.in_channels / s.groups;
  const int64_t out_per_group = s.out_channels / s.groups;
  const int64_t taps = s.kernel_h * s.kernel_w;
  const int64_t in_plane = s.in_height * s.in_width;
  const auto* grad_output = static_cast<const T*>(a.grad_output);
  const auto* input = static_cast<const T*>(a.input);
  const auto* weight = static_cast<const T*>(a.weight);
  // Not depthwise: runs of consecutive items of one (sample, group), their
  // grad_output planes staged together (up to about 1 MiB), share the
  // weight gradient's loads (weight_grad_fast).
  const int64_t go_plane = plane_stride_of<Acc>(g.go_rows * g.go_cols);
  const int64_t block =
      depthwise ? 1
                : min_of(out_per_group,
                         max_of(int64_t{SimdFor<Acc>::kWeightChannelBlock},
                                int64_t{1 << 20} / int64_t(sizeof(Acc) * go_plane)));

  // The weight gradient's fast path on pairs of pixels: bfloat16 copies of
  // the staged planes, rows widened by kPairPadding zeros (the input planes
  // staged into them straight from storage, none in float).
  const bool paired =
      kPairedBFloat16<T> && a.grad_weight != nullptr && fast_kernel_size(b) != 0;
  Scratch<Acc> go_buf(block * go_plane);
  const int64_t in_stage = plane_stride_of<Acc>(g.in_rows * g.in_cols);
  StagedGroup<Acc> staged_input(a.grad_weight != nullptr && !paired ? in_per_group : 0, in_stage);
  Scratch<Acc> row(g.in_cols);
  Scratch<Acc> grad_w(block * in_per_group * taps);
  // grad_input in the accumulation type with rows of whole vectors:
  // computed in place, with no accumulator plane to store from.
  const bool input_in_place = std::is_same_v<T, Acc> && g.grad_in_cols == s.in_width;
  Scratch<Acc> grad_in(want_input && !input_in_place ? s.in_height * g.grad_in_cols : 0);
  Scratch<Acc> filter(taps);
  // grad_input of a depthwise bfloat16 plane on tap pairs (as the forward),
  // from the staged grad_output's pair_neighbours.
  const bool input_on_tap_pairs = kPairedBFloat16<T> && want_input && tap_pairs(b);
  Scratch<BFloat16Pair> go_tap_pairs(input_on_tap_pairs ? g.go_rows * g.go_cols : 0);
  Scratch<BFloat16Pair> tap_pair_filter(input_on_tap_pairs ? b.kernel_h * ((b.kernel_w + 1) / 2) : 0);
  const int64_t in16_cols = g.in_cols + kPairPadding;
  const int64_t go16_cols = g.go_cols + kPairPadding;
  const int64_t in16_plane = plane_stride_of<BFloat16Bits>(g.in_rows * in16_cols);
  const int64_t go16_plane = plane_stride_of<BFloat16Bits>(g.go_rows * go16_cols);
  Scratch<BFloat16Bits> input16(paired ? in_per_group * in16_plane : 0);
  Scratch<BFloat16Bits> go16(paired ? block * go16_plane : 0);
  for (int64_t item = begin, count = 1; item < end; item += count) {
    const int64_t n = item / s.out_channels;
    const int64_t oc = item % s.out_channels;
    count = min_of(min_of(block, end - item), out_per_group - oc % out_per_group);
    const Acc* go = go_buf.get() + g.go_top * g.go_cols + g.go_left;
    for (int64_t o = 0; o < count; ++o) {
      stage_grad_output(grad_output, item + o, s, g, go_buf.get() + o * go_plane);
      if (a.grad_bias != nullptr) {
        static_cast<T*>(a.grad_bias)[item + o] = Storage<T>::from_acc(
            plane_sum(go + o * go_plane, g.go_cols, b.out_height, g.out_cols));
      }
    }
    if (a.grad_weight != nullptr) {
      const int64_t group = oc / out_per_group;
      if (staged_input.needs_staging(n * s.groups + group)) {
        for (int64_t icg = 0; icg < in_per_group; ++icg) {
          const T* plane = input + (n * s.in_channels + group * in_per_group + icg) * in_plane;
          if (!paired) {
            stage_input_plane(plane, b, g, staged_input.plane(icg), row.get());
          } else if constexpr (kPairedBFloat16<T>) {  // b has stride 1: the plain layout
            stage_bits_plane(plane, s.in_height, s.in_width, b.pad_h, b.pad_w,
                             input16.get() + icg * in16_plane, g.in_rows, in16_cols);
          }
        }
      }
      if constexpr (kPairedBFloat16<T>) {
        if (paired) {
          narrow_planes(go_buf.get(), count, go_plane, g.go_rows, g.go_cols, go16.get(),
                        go16_plane);
          weight_grad(input16.get(), in16_cols, in16_plane, in_per_group,
                      go16.get() + g.go_top * go16_cols + g.go_left, go16_cols, go16_plane, count,
                      b, g.out_cols, grad_w.get());
        }
      }
      if (!paired) {
        weight_grad(staged_input.plane(0), g.in_cols, in_stage, in_per_group, go, g.go_cols,
                    go_plane, count, b, g.out_cols, grad_w.get());
      }
      // The block's filters are contiguous: one row (a 1x1 filter's rows
      // would be single values).
      const int64_t filter_values = count * in_per_group * taps;
      store_plane(grad_w.get(), filter_values, 1, filter_values,
                  static_cast<T*>(a.grad_weight) + item * in_per_group * taps);
    }
    if (want_input) {
      load_filters(weight + item * taps, 1, taps, fast_kernel_size(b) != 0, filter.get());
      T* destination = static_cast<T*>(a.grad_input) + item * in_plane;
      Acc* sums = grad_in.get();
      if constexpr (std::is_same_v<T, Acc>) {
        if (input_in_place) sums = destination;
      }
      const Acc zero(0);
      if (input_on_tap_pairs) {
        if constexpr (kPairedBFloat16<T>) {
          pair_neighbours<SimdF32>(go_buf.get(), g.go_rows * g.go_cols, b.dilation_w,
                                   go_tap_pairs.get());
          pair_taps(filter.get(), b.kernel_h, tap_pair_filter.get());
          // As input_grad's fast path: the flipped correlation over the margin.
          correlate_tap_pairs(go_tap_pairs.get() + b.pad_h * g.go_cols + b.pad_w, g.go_cols,
                              tap_pair_filter.get(), b, s.in_height, g.grad_in_cols, sums,
                              g.grad_in_cols, &zero);
        }
      } else {
        input_grad(go_buf.get(), g, filter.get(), b, sums, g.grad_in_cols, &zero);
      }
      if (!input_in_place) store_plane(sums, g.grad_in_cols, s.in_height, s.in_width, destination);
    }
  }
}

template <typename T>
void backward_input_planes_typed(const BackwardArgs& a, int64_t begin, int64_t end) {
  using Acc = AccOf<T>;
  const ConvShape& s = a.shape;
  const ConvShape b = backward_shape(s);
  const Geometry g(b);
  const int64_t in_per_group = s.in_channels / s.groups;
  const int64_t out_per_group = s.out_channels / s.groups;
  const int64_t taps = s.kernel_h * s.kernel_w;
  const auto* grad_output = static_cast<const T*>(a.grad_output);
  const auto* weight = static_cast<const T*>(a.weight);
  const bool flipped = fast_kernel_size(b) != 0;
  // As in the forward: runs of consecutive items of one (sample, group)
  // through the channel-blocked tiles, the flipped filters laid out
  // [ic][ocg][tap].
  const bool blocked = channel_blocked(s);
  const int64_t block = blocked ? SimdFor<Acc>::kChannelBlock : 1;
  const int64_t go_plane = plane_stride_of<Acc>(g.go_rows * g.go_cols);
  const int64_t grad_in_plane = plane_stride_of<Acc>(s.in_height * g.grad_in_cols);

  constexpr bool paired = kPairedBFloat16<T>;
  // As in the forward: pairs straight from storage unless grad_output is
  // spread out; then no float plane or filter is staged.
  const bool pairs_from_storage = paired && blocked && !spreads_grad_output(s);
  StagedGroup<Acc> staged_grad_output(pairs_from_storage ? 0 : out_per_group, go_plane);
  // The channel-blocked tiles compute in place in grad_input where its rows
  // are whole vectors.
  const bool in_place = blocked && g.grad_in_cols == s.in_width;
  Scratch<Acc> grad_in(in_place ? 0 : block * grad_in_plane);
  Scratch<Acc> filters(paired && blocked ? 0 : block * out_per_group * taps);
  const int64_t out_pairs = (out_per_group + 1) / 2;
  const int64_t pair_plane = plane_stride_of<BFloat16Pair>(g.go_rows * g.go_cols);
  Scratch<BFloat16Pair> staged_pairs(paired && blocked ? out_pairs * pair_plane : 0);
  Scratch<BFloat16Pair> filter_pairs(paired && blocked ? block * out_pairs * taps : 0);
  for (int64_t item = begin, count = 1; item < end; item += count) {
    const int64_t n = item / s.in_channels;
    const int64_t ic = item % s.in_channels;
    const int64_t group = ic / in_per_group;
    const int64_t first_oc = group * out_per_group;
    const int64_t icg = ic % in_per_group;
    count = min_of(min_of(block, end - item), in_per_group - icg);
    if (!blocked) fill(grad_in.get(), count * grad_in_plane, Acc(0));
    if (staged_grad_output.needs_staging(n * s.groups + group)) {
      if (pairs_from_storage) {
        if constexpr (paired) {
          const int64_t source_plane = s.out_height * s.out_width;
          for (int64_t q = 0; 2 * q < out_per_group; ++q) {
            const T* first = grad_output + (n * s.out_channels + first_oc + 2 * q) * source_plane;
            stage_pair_plane(first, 2 * q + 1 < out_per_group ? first + source_plane : nullptr,
                             s.out_height, s.out_width, g.go_top, g.go_left,
                             staged_pairs.get() + q * pair_plane, g.go_rows, g.go_cols);
          }
        }
      } else {
        for (int64_t ocg = 0; ocg < out_per_group; ++ocg) {
          stage_grad_output(grad_output, n * s.out_channels + first_oc + ocg, s, g,
                            staged_grad_output.plane(ocg));
        }
        if constexpr (paired) {
          if (blocked) {
            pair_planes(staged_grad_output.plane(0), out_per_group, g.go_rows * g.go_cols,
                        go_plane, staged_pairs.get(), pair_plane);
          }
        }
      }
    }
    for (int64_t o = 0; o < count && !(paired && blocked); ++o) {
      for (int64_t ocg = 0; ocg < out_per_group; ++ocg) {
        const int64_t out_item = n * s.out_channels + first_oc + ocg;
        load_filters(weight + (out_item * in_per_group + icg + o) * taps, 1, taps, flipped,
                     filters.get() + (o * out_per_group + ocg) * taps);
      }
    }
    if (blocked) {
      // The flipped correlation over the margin, as input_grad's fast path.
      const int64_t margin = b.pad_h * g.go_cols + b.pad_w;
      if constexpr (paired) {
        // Filter (ocg, ic) of this sample, for pairs of grad_output planes.
        const int64_t filter_stride = in_per_group * taps;
        for (int64_t o = 0; o < count; ++o) {
          for (int64_t q = 0; 2 * q < out_per_group; ++q) {
            const T* first =
                weight + (n * s.out_channels + first_oc + 2 * q) * filter_stride + (icg + o) * taps;
            pair_filters(first, 2 * q + 1 < out_per_group ? first + filter_stride : nullptr, taps,
                         flipped, filter_pairs.get() + (o * out_pairs + q) * taps);
          }
        }
      }
      const Acc* zero = nullptr;
      // Into grad_input itself, or into accumulator planes.
      const auto correlate_into = [&](auto* out, int64_t out_stride, int64_t out_plane) {
        if constexpr (paired) {
          correlate_channels(staged_pairs.get() + margin, g.go_cols, pair_plane, out_pairs,
                             filter_pairs.get(), b, s.in_height, g.grad_in_cols, count, zero, out,
                             out_stride, out_plane);
        } else {
          correlate_channels(staged_grad_output.plane(0) + margin, g.go_cols, go_plane,
                             out_per_group, filters.get(), b, s.in_height, g.grad_in_cols, count,
                             zero, out, out_stride, out_plane);
        }
      };
      if (in_place) {
        correlate_into(static_cast<T*>(a.grad_input) + item * s.in_height * s.in_width,
                       s.in_width, s.in_height * s.in_width);
      } else {
        correlate_into(grad_in.get(), g.grad_in_cols, grad_in_plane);
      }
    } else {
      for (int64_t ocg = 0; ocg < out_per_group; ++ocg) {
        input_grad(staged_grad_output.plane(ocg), g, filters.get() + ocg * taps, b, grad_in.get(),
                   g.grad_in_cols);
      }
    }
    for (int64_t o = 0; o < count && !in_place; ++o) {
      store_plane(grad_in.get() + o * grad_in_plane, g.grad_in_cols, s.in_height, s.in_width,
                  static_cast<T*>(a.grad_input) + (item + o) * s.in_height * s.in_width);
    }
  }
}

// Whether a convolution of storage type T runs on Winograd tiles
// (winograd_tiles.h): bfloat16 on vdpbf16ps pairs stays with them.
template <typename T>
bool on_winograd_tiles(const ConvShape& s) {
  return !kPairedBFloat16<T> && winograd_tiles(s) && winograd_enabled();
}

// Runs [begin, end) in blocks of up to WinogradTiles' kMaxBlock consecutive
// items of one (sample, group), `group_items` items each: block(item,
// count) computes a block and returns the mask of its planes that came out
// finite; direct(item) computes each other plane again on the direct tiles.
template <typename Block, typename Direct>
void for_each_winograd_block(int64_t begin, int64_t end, int64_t group_items, int64_t max_block,
                             Block&& block, Direct&& direct) {
  for (int64_t item = begin, count = 1; item < end; item += count) {
    count = min_of(min_of(max_block, end - item), group_items - item % group_items);
    const uint32_t finite = block(item, count);
    for (int64_t o = 0; o < count; ++o) {
      if (!(finite >> o & 1)) direct(item + o);
    }
  }
}

// The forward on Winograd tiles: blocks of consecutive items of one
// (sample, group). A plane with a value that is not finite (an infinity or
// NaN among its inputs or filters, or an overflow) is computed again on the
// direct tiles, which give it the values of its own windows.
template <typename T>
void forward_winograd_planes(const ForwardArgs& a, int64_t begin, int64_t end) {
  using Acc = AccOf<T>;
  const ConvShape& s = a.shape;
  const int64_t in_per_group = s.in_channels / s.groups;
  const int64_t out_per_group = s.out_channels / s.groups;
  const auto* input = static_cast<const T*>(a.input);
  const auto* weight = static_cast<const T*>(a.weight);
  const auto* bias = static_cast<const T*>(a.bias);
  using Tiles = WinogradTiles<Acc>;
  Tiles tiles({in_per_group, s.in_height, s.in_width, s.pad_h, s.pad_w, s.out_height,
               s.out_width});
  Acc start[Tiles::kMaxBlock];
  const auto block = [&](int64_t item, int64_t count) {
    const int64_t n = item / s.out_channels;
    const int64_t oc = item % s.out_channels;
    const int64_t group = oc / out_per_group;
    for (int64_t o = 0; o < count; ++o) {
      start[o] = bias == nullptr ? Acc(0) : to_acc(bias[a.bias_per_sample ? item + o : oc + o]);
    }
    tiles.load_filters(weight + item * in_per_group * 9, in_per_group * 9, 9, false, count);
    return tiles.run(input + (n * s.in_channels + group * in_per_group) * s.in_height * s.in_width,
                     n * s.groups + group, count, start,
                     static_cast<T*>(a.output) + item * s.out_height * s.out_width);
  };
  for_each_winograd_block(begin, end, out_per_group, Tiles::kMaxBlock, block,
                          [&](int64_t item) { forward_planes<T>(a, item, item + 1); });
}

// grad_input on Winograd tiles: the flipped correlation of the group's
// grad_output planes over a margin of 2 - padding, for blocks of
// consecutive items of one (sample, group); as in the forward, a plane with
// a value that is not finite again on the direct tiles.
template <typename T>
void backward_input_winograd_planes(const BackwardArgs& a, int64_t begin, int64_t end) {
  using Acc = AccOf<T>;
  const ConvShape& s = a.shape;
  const int64_t in_per_group = s.in_channels / s.groups;
  const int64_t out_per_group = s.out_channels / s.groups;
  const auto* grad_output = static_cast<const T*>(a.grad_output);
  const auto* weight = static_cast<const T*>(a.weight);
  using Tiles = WinogradTiles<Acc>;
  Tiles tiles({out_per_group, s.out_height, s.out_width, 2 - s.pad_h, 2 - s.pad_w, s.in_height,
               s.in_width});
  const Acc zeros[Tiles::kMaxBlock] = {};
  const auto block = [&](int64_t item, int64_t count) {
    const int64_t n = item / s.in_channels;
    const int64_t ic = item % s.in_channels;
    const int64_t group = ic / in_per_group;
    const int64_t first_out = n * s.out_channels + group * out_per_group;
    // Filter (oc, ic) of this sample, flipped: the next item's is the next
    // filter, the next grad_output plane's a filter block further.
    tiles.load_filters(weight + (first_out * in_per_group + ic % in_per_group) * 9, 9,
                       in_per_group * 9, true, count);
    return tiles.run(grad_output + first_out * s.out_height * s.out_width, n * s.groups + group,
                     count, zeros, static_cast<T*>(a.grad_input) + item * s.in_height * s.in_width);
  };
  for_each_winograd_block(begin, end, in_per_group, Tiles::kMaxBlock, block, [&](int64_t item) {
    backward_input_planes_typed<T>(a, item, item + 1);
  });
}

// The weight gradient on Winograd tiles, for blocks of consecutive items of
// one (sample, group); grad_bias (and a plane whose gradient is not finite)
// from the direct work item.
template <typename T>
void backward_weight_winograd_planes(const BackwardArgs& a, int64_t begin, int64_t end) {
  using Acc = AccOf<T>;
  const ConvShape& s = a.shape;
  const int64_t in_per_group = s.in_channels / s.groups;
  const int64_t out_per_group = s.out_channels / s.groups;
  const int64_t filter_values = in_per_group * 9;
  if (a.grad_bias != nullptr) {
    BackwardArgs bias_only = a;
    bias_only.grad_weight = nullptr;
    backward_output_planes_typed<T>(bias_only, begin, end);
  }
  BackwardArgs weight_only = a;
  weight_only.grad_bias = nullptr;
  using Tiles = WinogradTiles<Acc>;
  Tiles tiles({in_per_group, s.in_height, s.in_width, s.pad_h, s.pad_w, s.out_height, s.out_width},
              true);
  Scratch<Acc> grad_w(Tiles::kMaxBlock * filter_values);
  const auto block = [&](int64_t item, int64_t count) {
    const int64_t n = item / s.out_channels;
    const int64_t group = item % s.out_channels / out_per_group;
    const uint32_t finite = tiles.weight_grad(
        static_cast<const T*>(a.input) +
            (n * s.in_channels + group * in_per_group) * s.in_height * s.in_width,
        n * s.groups + group,
        static_cast<const T*>(a.grad_output) + item * s.out_height * s.out_width, count,
        grad_w.get());
    store_plane(grad_w.get(), count * filter_values, 1, count * filter_values,
                static_cast<T*>(a.grad_weight) + item * filter_values);
    return finite;
  };
  for_each_winograd_block(begin, end, out_per_group, Tiles::kMaxBlock, block, [&](int64_t item) {
    backward_output_planes_typed<T>(weight_only, item, item + 1);
  });
}

// The forward as a matrix product (plane_products.h), for float and double
// (the planes as they are stored): the output planes of one (sample, group)
// at a time, from the filters, biases and input planes in place.
template <typename T>
void forward_pointwise_planes(const ForwardArgs& a, int64_t begin, int64_t end) {
  const ConvShape& s = a.shape;
  const int64_t in_per_group = s.in_channels / s.groups;
  const int64_t out_per_group = s.out_channels / s.groups;
  const int64_t pixels = s.in_height * s.in_width;
  const auto* input = static_cast<const T*>(a.input);
  const auto* weight = static_cast<const T*>(a.weight);
  const auto* bias = static_cast<const T*>(a.bias);
  for (int64_t item = begin, count = 1; item < end; item += count) {
    const int64_t n = item / s.out_channels;
    const int64_t oc = item % s.out_channels;
    const int64_t group = oc / out_per_group;
    count = min_of(end - item, out_per_group - oc % out_per_group);
    multiply_planes(weight + item * in_per_group, in_per_group, in_per_group,
                    input + (n * s.in_channels + group * in_per_group) * pixels, pixels, count,
                    bias == nullptr ? nullptr : bias + (a.bias_per_sample ? item : oc),
                    static_cast<T*>(a.output) + item * pixels);
  }
}

// grad_input as a matrix product: the transposed filters of one (sample,
// group) times its grad_output planes.
template <typename T>
void backward_input_pointwise_planes(const BackwardArgs& a, int64_t begin, int64_t end) {
  const ConvShape& s = a.shape;
  const int64_t in_per_group = s.in_channels / s.groups;
  const int64_t out_per_group = s.out_channels / s.groups;
  const int64_t pixels = s.in_height * s.in_width;
  const auto* weight = static_cast<const T*>(a.weight);
  Scratch<T> transposed(in_per_group * out_per_group);
  for (int64_t item = begin, count = 1; item < end; item += count) {
    const int64_t n = item / s.in_channels;
    const int64_t ic = item % s.in_channels;
    const int64_t group = ic / in_per_group;
    const int64_t icg = ic % in_per_group;
    count = min_of(end - item, in_per_group - icg);
    const int64_t first_out = n * s.out_channels + group * out_per_group;
    for (int64_t i = 0; i < count; ++i) {
      for (int64_t o = 0; o < out_per_group; ++o) {
        transposed.get()[i * out_per_group + o] = weight[(first_out + o) * in_per_group + icg + i];
      }
    }
    multiply_planes(transposed.get(), out_per_group, out_per_group,
                    static_cast<const T*>(a.grad_output) + first_out * pixels, pixels, count,
                    static_cast<const T*>(nullptr), static_cast<T*>(a.grad_input) + item * pixels);
  }
}

// One entry per table slot, dispatching on the dtype. A build that only adds
// a bfloat16 path of its own (avx512_bf16) compiles that dtype alone and
// hands the others to the table `Others` (the same source, compiled once).
template <template <typename> class Kernel, typename Args, auto Slot, auto Others>
void for_dtype(const Args& a, int64_t begin, int64_t end) {
  if constexpr (!std::is_same_v<decltype(Others), std::nullptr_t>) {
    if (a.dtype != DType::kBFloat16) return (Others().*Slot)(a, begin, end);
    return Kernel<BFloat16Bits>::run(a, begin, end);
  } else {
    switch (a.dtype) {
      case DType::kFloat: return Kernel<float>::run(a, begin, end);
      case DType::kDouble: return Kernel<double>::run(a, begin, end);
      case DType::kHalf: return Kernel<HalfBits>::run(a, begin, end);
      case DType::kBFloat16: return Kernel<BFloat16Bits>::run(a, begin, end);
    }
  }
}

template <typename T>
struct ForwardKernel {
  static void run(const ForwardArgs& a, int64_t b, int64_t e) {
    if constexpr (std::is_same_v<T, AccOf<T>>) {
      if (pointwise_product(a.shape)) return forward_pointwise_planes<T>(a, b, e);
    }
    if (on_winograd_tiles<T>(a.shape)) return forward_winograd_planes<T>(a, b, e);
    forward_planes<T>(a, b, e);
  }
};
template <typename T>
struct BackwardOutputKernel {
  static void run(const BackwardArgs& a, int64_t b, int64_t e) {
    if (a.grad_weight != nullptr && on_winograd_tiles<T>(a.shape) &&
        WinogradTiles<AccOf<T>>::weight_gradient_gains(a.shape)) {
      return backward_weight_winograd_planes<T>(a, b, e);
    }
    backward_output_planes_typed<T>(a, b, e);
  }
};
template <typename T>
struct BackwardInputKernel {
  static void run(const BackwardArgs& a, int64_t b, int64_t e) {
    if constexpr (std::is_same_v<T, AccOf<T>>) {
      if (pointwise_product(a.shape)) return backward_input_pointwise_planes<T>(a, b, e);
    }
    if (on_winograd_tiles<T>(a.shape)) return backward_input_winograd_planes<T>(a, b, e);
    backward_input_planes_typed<T>(a, b, e);
  }
};

template <auto Others = nullptr>
PlaneKernels make_plane_kernels(const char* isa) {
  return PlaneKernels{
      isa, &for_dtype<ForwardKernel, ForwardArgs, &PlaneKernels::forward, Others>,
      &for_dtype<BackwardOutputKernel, BackwardArgs, &PlaneKernels::backward_output_planes, Others>,
      &for_dtype<BackwardInputKernel, BackwardArgs, &PlaneKernels::backward_input_planes, Others>};
}

}  // namespace
}  // namespace mula::cpu
