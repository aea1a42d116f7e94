// The per-plane CPU kernels, written once and compiled once per instruction
// set: each kernels_<isa>.cpp defines `Simd` (vector type, lane count and
// register-blocking sizes for that ISA) and then includes this file, which
// holds the work items (loops over planes) and the table of entry points and
// includes the parts: storage_types.h (dtypes and rounding), plane_staging.h,
// blocked_kernels.h (register-blocked tiles), general_loops.h (any shape)
// and plane_dispatch.h (which of the two a plane takes).
// Everything here has internal linkage, so the builds for different ISAs
// never meet at link time.
//
// Structure (it mirrors the CUDA kernels, one (sample, channel) plane each):
// - forward: stage the input plane with its zero halo (converted to the
//   accumulation type), correlate it with the plane's filter into an
//   accumulator plane that starts at the bias, store it converted back;
// - backward: stage the grad_output plane once, with a zero margin of the
//   filter's span,
//   and from it compute grad_bias (its sum), grad_weight (one reduction per
//   filter tap against the staged input plane) and grad_input (the forward
//   correlation with the flipped filter over the margin: a gather, no
//   scatter).
// Fast paths: float accumulation and a square 1x1, 3x3, 5x5 or 7x7 filter
// (any dilation), with register-blocked tiles: every pass at stride 1, the
// forward at any stride. Everything else takes the general loops, which
// handle any size, stride, dilation and padding.
//
// Within a plane every sum runs in a fixed order, and planes never share an
// output element, so results do not depend on the thread count.
#pragma once

// GCC's predictive commoning (-O3) carries the broadcast taps of one input
// row over to the next in registers, which the register-blocked tiles need
// for their accumulators: it made the 7x7 tiles spill (AVX2: 296 stack
// accesses, AVX-512: 133) and cost the forward about a quarter of its speed.
#pragma GCC optimize("no-predictive-commoning")

#include <cstdint>

#include "plane_dispatch.h"  // and, through it, the other parts

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

  const bool in_place = accumulates_in_place<T>(blocked_kernel_size<Acc>(s) != 0, s.out_width);
  const int64_t acc_stride = in_place ? s.out_width : g.out_cols;
  StagedGroup<Acc> staged(in_per_group, g.in_rows * g.in_cols);
  Scratch<Acc> out_buf(in_place ? 0 : s.out_height * g.out_cols);
  Scratch<Acc> filters(in_per_group * taps);
  for (int64_t item = begin; item < end; ++item) {
    const int64_t n = item / s.out_channels;
    const int64_t oc = item % s.out_channels;
    const int64_t group = oc / out_per_group;
    const Acc b = bias == nullptr ? Acc(0) : to_acc(bias[a.bias_per_sample ? item : oc]);
    T* out_plane = output + item * s.out_height * s.out_width;
    Acc* acc = accumulator(out_plane, in_place, out_buf.get());
    fill(acc, s.out_height * acc_stride, b);
    load_filters(weight + item * in_per_group * taps, in_per_group, taps, false, filters.get());
    if (staged.needs_staging(n * s.groups + group)) {
      for (int64_t icg = 0; icg < in_per_group; ++icg) {
        const T* plane =
            input + (n * s.in_channels + group * in_per_group + icg) * s.in_height * s.in_width;
        stage_input_plane(plane, s, g, staged.plane(icg));
      }
    }
    for (int64_t icg = 0; icg < in_per_group; ++icg) {
      correlate(staged.plane(icg), g.in_cols, filters.get() + icg * taps, s, s.out_height,
                g.out_cols, acc, acc_stride);
    }
    if (!in_place) store_plane(acc, acc_stride, s.out_height, s.out_width, out_plane);
  }
}

template <typename T>
void backward_output_planes_typed(const BackwardArgs& a, int64_t begin, int64_t end) {
  using Acc = AccOf<T>;
  const ConvShape& s = a.shape;
  const Geometry g(s);
  const bool depthwise = is_depthwise(s);
  const bool want_input = depthwise && a.grad_input != nullptr;
  const int64_t in_per_group = s.in_channels / s.groups;
  const int64_t out_per_group = s.out_channels / s.groups;
  const int64_t taps = s.kernel_h * s.kernel_w;
  const int64_t in_plane = s.in_height * s.in_width;
  const auto* grad_output = static_cast<const T*>(a.grad_output);
  const auto* input = static_cast<const T*>(a.input);
  const auto* weight = static_cast<const T*>(a.weight);

  Scratch<Acc> go_buf(g.go_rows * g.go_cols);
  StagedGroup<Acc> staged_input(a.grad_weight != nullptr ? in_per_group : 0, g.in_rows * g.in_cols);
  Scratch<Acc> grad_w(in_per_group * taps);
  const bool in_place = accumulates_in_place<T>(fast_kernel_size<Acc>(s) != 0, s.in_width);
  const int64_t grad_in_stride = in_place ? s.in_width : g.grad_in_cols;
  Scratch<Acc> grad_in_buf(want_input && !in_place ? s.in_height * g.grad_in_cols : 0);
  Scratch<Acc> filter(taps);
  for (int64_t item = begin; item < end; ++item) {
    const int64_t n = item / s.out_channels;
    const int64_t oc = item % s.out_channels;
    stage_plane(grad_output + item * s.out_height * s.out_width, s.out_height, s.out_width,
                g.go_top, g.go_left, go_buf.get(), g.go_rows, g.go_cols);
    const Acc* go = go_buf.get() + g.go_top * g.go_cols + g.go_left;
    if (a.grad_bias != nullptr) {
      static_cast<T*>(a.grad_bias)[item] =
          Storage<T>::from_acc(plane_sum(go, g.go_cols, s.out_height, g.out_cols));
    }
    if (a.grad_weight != nullptr) {
      const int64_t group = oc / out_per_group;
      if (staged_input.needs_staging(n * s.groups + group)) {
        for (int64_t icg = 0; icg < in_per_group; ++icg) {
          const T* plane = input + (n * s.in_channels + group * in_per_group + icg) * in_plane;
          stage_input_plane(plane, s, g, staged_input.plane(icg));
        }
      }
      for (int64_t icg = 0; icg < in_per_group; ++icg) {
        weight_grad(staged_input.plane(icg), g.in_cols, go, g.go_cols, s, g.out_cols,
                    grad_w.get() + icg * taps);
      }
      store_plane(grad_w.get(), taps, in_per_group, taps,
                  static_cast<T*>(a.grad_weight) + item * in_per_group * taps);
    }
    if (want_input) {
      T* grad_in_plane = static_cast<T*>(a.grad_input) + item * in_plane;
      Acc* grad_in = accumulator(grad_in_plane, in_place, grad_in_buf.get());
      load_filters(weight + item * taps, 1, taps, fast_kernel_size<Acc>(s) != 0, filter.get());
      fill(grad_in, s.in_height * grad_in_stride, Acc(0));
      input_grad(go_buf.get(), g, filter.get(), s, grad_in, grad_in_stride);
      if (!in_place) store_plane(grad_in, grad_in_stride, s.in_height, s.in_width, grad_in_plane);
    }
  }
}

template <typename T>
void backward_input_planes_typed(const BackwardArgs& a, int64_t begin, int64_t end) {
  using Acc = AccOf<T>;
  const ConvShape& s = a.shape;
  const Geometry g(s);
  const int64_t in_per_group = s.in_channels / s.groups;
  const int64_t out_per_group = s.out_channels / s.groups;
  const int64_t taps = s.kernel_h * s.kernel_w;
  const auto* grad_output = static_cast<const T*>(a.grad_output);
  const auto* weight = static_cast<const T*>(a.weight);
  const bool flipped = fast_kernel_size<Acc>(s) != 0;

  const bool in_place = accumulates_in_place<T>(fast_kernel_size<Acc>(s) != 0, s.in_width);
  const int64_t grad_in_stride = in_place ? s.in_width : g.grad_in_cols;
  StagedGroup<Acc> staged_grad_output(out_per_group, g.go_rows * g.go_cols);
  Scratch<Acc> grad_in_buf(in_place ? 0 : s.in_height * g.grad_in_cols);
  Scratch<Acc> filter(taps);
  for (int64_t item = begin; item < end; ++item) {
    const int64_t n = item / s.in_channels;
    const int64_t ic = item % s.in_channels;
    const int64_t group = ic / in_per_group;
    const int64_t first_oc = group * out_per_group;
    const int64_t icg = ic % in_per_group;
    T* grad_in_plane = static_cast<T*>(a.grad_input) + item * s.in_height * s.in_width;
    Acc* grad_in = accumulator(grad_in_plane, in_place, grad_in_buf.get());
    fill(grad_in, s.in_height * grad_in_stride, Acc(0));
    if (staged_grad_output.needs_staging(n * s.groups + group)) {
      for (int64_t ocg = 0; ocg < out_per_group; ++ocg) {
        const int64_t out_item = n * s.out_channels + first_oc + ocg;
        stage_plane(grad_output + out_item * s.out_height * s.out_width, s.out_height, s.out_width,
                    g.go_top, g.go_left, staged_grad_output.plane(ocg), g.go_rows, g.go_cols);
      }
    }
    for (int64_t ocg = 0; ocg < out_per_group; ++ocg) {
      const int64_t out_item = n * s.out_channels + first_oc + ocg;
      load_filters(weight + (out_item * in_per_group + icg) * taps, 1, taps, flipped, filter.get());
      input_grad(staged_grad_output.plane(ocg), g, filter.get(), s, grad_in, grad_in_stride);
    }
    if (!in_place) store_plane(grad_in, grad_in_stride, s.in_height, s.in_width, grad_in_plane);
  }
}

// One entry per table slot, dispatching on the dtype.
template <template <typename> class Kernel, typename Args>
void for_dtype(const Args& a, int64_t begin, int64_t end) {
  switch (a.dtype) {
    case DType::kFloat: return Kernel<float>::run(a, begin, end);
    case DType::kDouble: return Kernel<double>::run(a, begin, end);
    case DType::kHalf: return Kernel<HalfBits>::run(a, begin, end);
    case DType::kBFloat16: return Kernel<BFloat16Bits>::run(a, begin, end);
  }
}

template <typename T>
struct ForwardKernel {
  static void run(const ForwardArgs& a, int64_t b, int64_t e) { forward_planes<T>(a, b, e); }
};
template <typename T>
struct BackwardOutputKernel {
  static void run(const BackwardArgs& a, int64_t b, int64_t e) {
    backward_output_planes_typed<T>(a, b, e);
  }
};
template <typename T>
struct BackwardInputKernel {
  static void run(const BackwardArgs& a, int64_t b, int64_t e) {
    backward_input_planes_typed<T>(a, b, e);
  }
};

PlaneKernels make_plane_kernels(const char* isa) {
  return PlaneKernels{isa, &for_dtype<ForwardKernel, ForwardArgs>,
                      &for_dtype<BackwardOutputKernel, BackwardArgs>,
                      &for_dtype<BackwardInputKernel, BackwardArgs>};
}

}  // namespace
}  // namespace mula::cpu
