// Host launch code: tile selection, dtype and kernel-size dispatch. Included
// once by dynamic_conv_kernels.cu (nvcc) and once by the emulated build
// (csrc/emulator/emulated_kernels.cpp); only MULA_LAUNCH differs between them.
#pragma once

#include <algorithm>
#include <climits>
#include <type_traits>

#include "dynamic_conv_kernels.cuh"

#ifdef MULA_CUDA_EMULATION
#define MULA_LAUNCH(kernel, grid, block, shared_bytes, stream, ...) \
  ((void)(stream), ::mula::emu::launch(grid, block, shared_bytes, kernel, __VA_ARGS__))
#else
#define MULA_LAUNCH(kernel, grid, block, shared_bytes, stream, ...) \
  (kernel<<<grid, block, shared_bytes, stream>>>(__VA_ARGS__), cudaGetLastError())
#endif

namespace mula::cuda {
namespace {

// The static limit every CUDA GPU grants without opting in per kernel.
constexpr std::size_t kMaxSharedBytes = 48 * 1024;

enum class Pass { kForward, kBackward };

std::size_t accumulator_bytes(DType type) {
  return type == DType::kDouble ? sizeof(double) : sizeof(float);
}

int ceil_div(int a, int b) { return (a + b - 1) / b; }

// Staged operand and shared memory of one block for a tile of tile_h x tile_w.
Tiling make_tiling(const ConvShape& s, Pass pass, int tile_h, int tile_w) {
  Tiling t{};
  t.tile_h = tile_h;
  t.tile_w = tile_w;
  if (pass == Pass::kBackward) {  // tile of the input plane, staging grad_output
    // At least one tile, so that an empty input plane still sums grad_bias.
    t.tiles_h = std::max(1, ceil_div(int(s.in_height), tile_h));
    t.tiles_w = std::max(1, ceil_div(int(s.in_width), tile_w));
    t.staged_rows = (tile_h - 1 + (int(s.kernel_h) - 1) * int(s.dilation_h)) / int(s.stride_h) + 2;
    t.staged_cols = (tile_w - 1 + (int(s.kernel_w) - 1) * int(s.dilation_w)) / int(s.stride_w) + 2;
  } else {  // tile of the output plane, staging the input with its halo
    t.tiles_h = ceil_div(int(s.out_height), tile_h);
    t.tiles_w = ceil_div(int(s.out_width), tile_w);
    t.staged_rows = (tile_h - 1) * int(s.stride_h) + (int(s.kernel_h) - 1) * int(s.dilation_h) + 1;
    t.staged_cols = (tile_w - 1) * int(s.stride_w) + (int(s.kernel_w) - 1) * int(s.dilation_w) + 1;
  }
  return t;
}

std::size_t shared_bytes(const ConvShape& s, Pass pass, const Tiling& t, DType type) {
  const std::size_t taps = std::size_t(int(s.kernel_h)) * int(s.kernel_w);
  std::size_t elements = std::size_t(t.staged_rows) * t.staged_cols + taps;  // + the filter
  if (pass == Pass::kBackward) elements += kWarps * (taps + 1);              // + warp sums
  return elements * accumulator_bytes(type);
}

// The largest tile (up to 32 x 32) whose staged operands fit in shared
// memory; tile_h == 0 when even a single output does not fit.
Tiling choose_tiling(const ConvShape& s, Pass pass, DType type) {
  const bool over_input = pass == Pass::kBackward;
  int tile_h = std::min(kMaxTileH, over_input ? std::max(int(s.in_height), 1) : int(s.out_height));
  int tile_w = std::min(kMaxTileW, over_input ? std::max(int(s.in_width), 1) : int(s.out_width));
  Tiling t = make_tiling(s, pass, tile_h, tile_w);
  while (shared_bytes(s, pass, t, type) > kMaxSharedBytes) {
    if (tile_h == 1 && tile_w == 1) return Tiling{};
    if (tile_h >= tile_w) {
      tile_h = (tile_h + 1) / 2;
    } else {
      tile_w = (tile_w + 1) / 2;
    }
    t = make_tiling(s, pass, tile_h, tile_w);
  }
  return t;
}

// Blocks for planes x tiles, or 0 when the grid would be too large.
unsigned int grid_blocks(std::int64_t planes, const Tiling& t) {
  const std::int64_t blocks = planes * t.tiles_h * t.tiles_w;
  return blocks > INT_MAX ? 0u : static_cast<unsigned int>(blocks);
}

template <typename T>
struct TypeTag {
  using type = T;
};

template <typename Body>
cudaError_t dispatch_type(DType type, Body&& body) {
  switch (type) {
    case DType::kFloat: return body(TypeTag<float>{});
    case DType::kDouble: return body(TypeTag<double>{});
    case DType::kHalf: return body(TypeTag<__half>{});
    case DType::kBFloat16: return body(TypeTag<__nv_bfloat16>{});
  }
  return cudaErrorInvalidConfiguration;
}

// Square 3, 5 and 7 (MuLA's sizes) get kernels with the filter in registers
// and fully unrolled loops; everything else takes the generic kernels (0).
template <typename Body>
cudaError_t dispatch_kernel_size(const ConvShape& s, Body&& body) {
  if (int(s.kernel_h) == int(s.kernel_w)) {
    switch (int(s.kernel_h)) {
      case 3: return body(std::integral_constant<int, 3>{});
      case 5: return body(std::integral_constant<int, 5>{});
      case 7: return body(std::integral_constant<int, 7>{});
      default: break;
    }
  }
  return body(std::integral_constant<int, 0>{});
}

// The backward's register kernels assume stride 1 x 1 (MuLA's case, gathers
// without integer divisions); any other stride takes the generic kernel.
template <typename Body>
cudaError_t dispatch_backward_kernel_size(const ConvShape& s, Body&& body) {
  if (int(s.stride_h) == 1 && int(s.stride_w) == 1) return dispatch_kernel_size(s, body);
  return body(std::integral_constant<int, 0>{});
}

const dim3 kBlock(kBlockX, kBlockY);

int round_up(int a, int b) { return ceil_div(a, b) * b; }

// The tiles of blocked_forward_kernel<., K, S, D>: 2 output columns per
// thread, 16 or 32 threads along a row (narrow planes waste no more than
// half a tile), as many row groups as the plane needs up to 256 threads,
// halved until the staged input fits; tile_h == 0 when it never does (or
// the output is empty): then forward_kernel runs instead.
template <int K, int S, int D>
Tiling blocked_forward_tiling(const ConvShape& s, DType type) {
  using B = ForwardBlocking<K, S, D>;
  const int out_h = int(s.out_height);
  const int out_w = int(s.out_width);
  if (out_h == 0 || out_w == 0) return Tiling{};
  Tiling t{};
  t.threads_x = out_w > 32 ? 32 : 16;
  t.tile_w = B::kCols * t.threads_x;
  const int whole_warps = 32 / t.threads_x;  // row groups per warp
  int groups = std::min(kThreads / t.threads_x, round_up(ceil_div(out_h, B::kRows), whole_warps));
  for (;;) {
    t.tile_h = groups * B::kRows;
    t.tiles_h = ceil_div(out_h, t.tile_h);
    t.tiles_w = ceil_div(out_w, t.tile_w);
    t.staged_rows = (t.tile_h - 1) * S + (K - 1) * D + 1;
    t.staged_cols = round_up((t.tile_w - 1) * S + (K - 1) * D + 1, B::kVector);
    if (std::size_t(t.staged_rows) * t.staged_cols * accumulator_bytes(type) <= kMaxSharedBytes)
      return t;
    if (groups == whole_warps) return Tiling{};
    groups = std::max(whole_warps, round_up(groups / 2, whole_warps));
  }
}

// Calls body(K, S, D) (integral constants) when blocked_forward_kernel serves
// the shape: a square 3, 5 or 7 filter, the same stride and dilation along
// both axes, stride 1 or 2 at dilation 1, or dilation 2 at stride 1.
// Returns false, without calling it, otherwise.
template <typename Body>
bool dispatch_blocked_forward(const ConvShape& s, Body&& body) {
  const int k = int(s.kernel_h);
  if (int(s.kernel_w) != k || s.stride_w != s.stride_h || s.dilation_w != s.dilation_h)
    return false;
  auto with_size = [&](auto stride, auto dilation) {
    switch (k) {
      case 3: body(std::integral_constant<int, 3>{}, stride, dilation); return true;
      case 5: body(std::integral_constant<int, 5>{}, stride, dilation); return true;
      case 7: body(std::integral_constant<int, 7>{}, stride, dilation); return true;
      default: return false;
    }
  };
  using One = std::integral_constant<int, 1>;
  using Two = std::integral_constant<int, 2>;
  if (s.stride_h == 1 && s.dilation_h == 1) return with_size(One{}, One{});
  if (s.stride_h == 2 && s.dilation_h == 1) return with_size(Two{}, One{});
  if (s.stride_h == 1 && s.dilation_h == 2) return with_size(One{}, Two{});
  return false;
}

// The storage types the blocked forward is built for (float64 would need
// twice the registers for its filter: it takes the generic kernel).
template <typename Body>
cudaError_t dispatch_single_or_half_type(DType type, Body&& body) {
  switch (type) {
    case DType::kFloat: return body(TypeTag<float>{});
    case DType::kHalf: return body(TypeTag<__half>{});
    case DType::kBFloat16: return body(TypeTag<__nv_bfloat16>{});
    case DType::kDouble: break;
  }
  return cudaErrorInvalidConfiguration;
}

cudaError_t launch_blocked_forward(const ForwardArgs& args, cudaStream_t stream, bool& launched) {
  const ConvShape& shape = args.shape;
  cudaError_t status = cudaSuccess;
  launched = false;
  if (args.dtype == DType::kDouble) return status;
  dispatch_blocked_forward(shape, [&](auto size, auto stride, auto dilation) {
    constexpr int K = decltype(size)::value;
    constexpr int S = decltype(stride)::value;
    constexpr int D = decltype(dilation)::value;
    const Tiling t = blocked_forward_tiling<K, S, D>(shape, args.dtype);
    const unsigned int blocks = grid_blocks(shape.batch * shape.out_channels, t);
    if (t.tile_h == 0 || blocks == 0) return;
    launched = true;
    const unsigned int threads = t.threads_x * (t.tile_h / ForwardBlocking<K, S, D>::kRows);
    const std::size_t bytes =
        std::size_t(t.staged_rows) * t.staged_cols * accumulator_bytes(args.dtype);
    status = dispatch_single_or_half_type(args.dtype, [&](auto tag) {
      using scalar_t = typename decltype(tag)::type;
      auto kernel = &blocked_forward_kernel<scalar_t, K, S, D>;
      return MULA_LAUNCH(kernel, dim3(blocks), dim3(threads), bytes, stream, shape, t,
                         static_cast<const scalar_t*>(args.input),
                         static_cast<const scalar_t*>(args.weight),
                         static_cast<const scalar_t*>(args.bias),
                         args.bias_per_sample ? shape.out_channels : std::int64_t(0),
                         static_cast<scalar_t*>(args.output));
    });
  });
  return status;
}

// The tiles of blocked_backward_kernel<., K, D> over the input plane: 16
// pixels per thread (kRows x kCols), 32 or 64 pixels along a tile row, as
// many row groups as the plane needs up to 256 threads (a 64 x 64 plane is
// one tile), halved until the staged grad_output and the warp sums fit;
// tile_h == 0 when they never do or the plane is empty (backward_kernel then).
template <int K, int D>
Tiling blocked_backward_tiling(const ConvShape& s, DType type) {
  using B = BackwardBlocking<K, D>;
  const int height = int(s.in_height);
  const int width = int(s.in_width);
  if (height == 0 || width == 0) return Tiling{};
  Tiling t{};
  t.tile_w = width > 32 ? 64 : 32;
  t.threads_x = t.tile_w / B::kCols;
  const int whole_warps = std::max(1, 32 / t.threads_x);
  int groups = std::min(kThreads / t.threads_x, round_up(ceil_div(height, B::kRows), whole_warps));
  for (;;) {
    t.tile_h = groups * B::kRows;
    t.tiles_h = ceil_div(height, t.tile_h);
    t.tiles_w = ceil_div(width, t.tile_w);
    t.staged_rows = t.tile_h + (K - 1) * D;
    t.staged_cols = t.tile_w + (K - 1) * D;
    const std::size_t warps = std::size_t(t.threads_x) * groups / 32;
    const std::size_t elements = std::size_t(t.staged_rows) * t.staged_cols + warps * (K * K + 1);
    if (elements * accumulator_bytes(type) <= kMaxSharedBytes) return t;
    if (groups == whole_warps) return Tiling{};
    groups = std::max(whole_warps, round_up(groups / 2, whole_warps));
  }
}

// Calls body(K, S, D) when blocked_backward_kernel serves the shape: a square
// 3, 5 or 7 filter, the same stride and dilation along both axes, stride 1
// at dilation 1 or 2, or stride 2 at dilation 1, in a storage type other
// than float64; returns false otherwise.
template <typename Body>
bool dispatch_blocked_backward(const ConvShape& s, DType type, Body&& body) {
  const int k = int(s.kernel_h);
  if (type == DType::kDouble || int(s.kernel_w) != k || s.stride_w != s.stride_h ||
      s.dilation_w != s.dilation_h)
    return false;
  auto with_size = [&](auto stride, auto dilation) {
    switch (k) {
      case 3: body(std::integral_constant<int, 3>{}, stride, dilation); return true;
      case 5: body(std::integral_constant<int, 5>{}, stride, dilation); return true;
      case 7: body(std::integral_constant<int, 7>{}, stride, dilation); return true;
      default: return false;
    }
  };
  using One = std::integral_constant<int, 1>;
  using Two = std::integral_constant<int, 2>;
  if (s.stride_h == 1 && s.dilation_h == 1) return with_size(One{}, One{});
  if (s.stride_h == 1 && s.dilation_h == 2) return with_size(One{}, Two{});
  if (s.stride_h == 2 && s.dilation_h == 1) return with_size(Two{}, One{});
  return false;
}

// The tiling of the backward launch: the blocked kernel's where it serves
// the shape and fits, else backward_kernel's. `blocked` says which.
Tiling backward_tiling(const ConvShape& s, DType type, bool& blocked) {
  Tiling t{};
  blocked = false;
  dispatch_blocked_backward(s, type, [&](auto size, auto, auto dilation) {
    t = blocked_backward_tiling<decltype(size)::value, decltype(dilation)::value>(s, type);
    blocked = t.tile_h != 0;
  });
  return blocked ? t : choose_tiling(s, Pass::kBackward, type);
}

}  // namespace

bool fits_shared_memory(const ConvShape& shape, DType type) {
  for (Pass pass : {Pass::kForward, Pass::kBackward}) {
    ConvShape probe = shape;  // the check must not depend on empty planes
    probe.in_height = std::max<std::int64_t>(probe.in_height, 1);
    probe.in_width = std::max<std::int64_t>(probe.in_width, 1);
    if (choose_tiling(probe, pass, type).tile_h == 0) return false;
  }
  return true;
}

std::size_t backward_workspace_bytes(const ConvShape& shape, DType type) {
  bool blocked = false;
  const Tiling t = backward_tiling(shape, type, blocked);
  const std::int64_t tiles = std::int64_t(t.tiles_h) * t.tiles_w;
  if (tiles <= 1) return 0;
  const std::int64_t planes = shape.batch * shape.out_channels * (shape.in_channels / shape.groups);
  return std::size_t(planes) * tiles * (std::size_t(shape.kernel_h) * shape.kernel_w + 1) *
         accumulator_bytes(type);
}

cudaError_t launch_forward(const ForwardArgs& args, cudaStream_t stream) {
  const ConvShape& shape = args.shape;
  if (shape.batch * shape.out_channels == 0) return cudaSuccess;
  bool launched = false;
  const cudaError_t blocked = launch_blocked_forward(args, stream, launched);
  if (launched) return blocked;
  const Tiling t = choose_tiling(shape, Pass::kForward, args.dtype);
  const std::int64_t planes = shape.batch * shape.out_channels;
  if (planes == 0 || t.tile_h == 0 || t.tile_w == 0) return cudaSuccess;
  const unsigned int blocks = grid_blocks(planes, t);
  if (blocks == 0) return cudaErrorInvalidConfiguration;
  const std::size_t bytes = shared_bytes(shape, Pass::kForward, t, args.dtype);
  return dispatch_type(args.dtype, [&](auto tag) {
    using scalar_t = typename decltype(tag)::type;
    return dispatch_kernel_size(shape, [&](auto size) {
      auto kernel = &forward_kernel<scalar_t, decltype(size)::value>;
      return MULA_LAUNCH(kernel, dim3(blocks), kBlock, bytes, stream, shape, t,
                         static_cast<const scalar_t*>(args.input),
                         static_cast<const scalar_t*>(args.weight),
                         static_cast<const scalar_t*>(args.bias),
                         args.bias_per_sample ? shape.out_channels : std::int64_t(0),
                         static_cast<scalar_t*>(args.output));
    });
  });
}

cudaError_t launch_backward(const BackwardArgs& args, void* workspace, cudaStream_t stream) {
  const ConvShape& shape = args.shape;
  const DType type = args.dtype;
  bool blocked = false;
  const Tiling t = backward_tiling(shape, type, blocked);
  const std::int64_t planes = shape.batch * shape.in_channels;
  if (planes == 0 || t.tile_h == 0 || t.tile_w == 0) return cudaSuccess;
  const unsigned int blocks = grid_blocks(planes, t);
  if (blocks == 0) return cudaErrorInvalidConfiguration;
  const int tiles = t.tiles_h * t.tiles_w;
  const bool want_sums = args.grad_weight != nullptr || args.grad_bias != nullptr;
  return dispatch_type(type, [&](auto tag) {
    using scalar_t = typename decltype(tag)::type;
    using acc_t = typename Numeric<scalar_t>::acc_t;
    auto* partial = want_sums && tiles > 1 ? static_cast<acc_t*>(workspace) : nullptr;
    const auto* grad_output = static_cast<const scalar_t*>(args.grad_output);
    const auto* input = static_cast<const scalar_t*>(args.input);
    const auto* weight = static_cast<const scalar_t*>(args.weight);
    auto* grad_input = static_cast<scalar_t*>(args.grad_input);
    auto* grad_weight = static_cast<scalar_t*>(args.grad_weight);
    auto* grad_bias = static_cast<scalar_t*>(args.grad_bias);
    cudaError_t status = cudaSuccess;
    if (blocked) {
      dispatch_blocked_backward(shape, type, [&](auto size, auto stride, auto dilation) {
        if constexpr (!std::is_same_v<scalar_t, double>) {  // not dispatched for float64
          constexpr int K = decltype(size)::value;
          constexpr int S = decltype(stride)::value;
          constexpr int D = decltype(dilation)::value;
          const unsigned int threads = t.threads_x * (t.tile_h / BackwardBlocking<K, D>::kRows);
          const std::size_t bytes =
              (std::size_t(t.staged_rows) * t.staged_cols + threads / 32 * (K * K + 1)) *
              sizeof(acc_t);
          auto kernel = &blocked_backward_kernel<scalar_t, K, S, D>;
          status = MULA_LAUNCH(kernel, dim3(blocks), dim3(threads), bytes, stream, shape, t,
                               grad_output, input, weight, partial, grad_input, grad_weight,
                               grad_bias);
        }
      });
    } else {
      const std::size_t bytes = shared_bytes(shape, Pass::kBackward, t, type);
      status = dispatch_backward_kernel_size(shape, [&](auto size) {
        auto kernel = &backward_kernel<scalar_t, decltype(size)::value>;
        return MULA_LAUNCH(kernel, dim3(blocks), kBlock, bytes, stream, shape, t, grad_output,
                           input, weight, partial, grad_input, grad_weight, grad_bias);
      });
    }
    if (status != cudaSuccess || partial == nullptr) return status;
    const std::int64_t weight_planes =
        shape.batch * shape.out_channels * (shape.in_channels / shape.groups);
    const std::int64_t sums = weight_planes * (std::int64_t(shape.kernel_h) * shape.kernel_w + 1);
    const std::int64_t finalize_blocks = (sums + kThreads - 1) / kThreads;
    if (finalize_blocks == 0) return status;
    if (finalize_blocks > INT_MAX) return cudaErrorInvalidConfiguration;
    auto finalize = &grad_weight_finalize_kernel<scalar_t>;
    return MULA_LAUNCH(finalize, dim3(static_cast<unsigned int>(finalize_blocks)), kBlock,
                       std::size_t(0), stream, shape, tiles, static_cast<const acc_t*>(partial),
                       grad_weight, grad_bias);
  });
}

}  // namespace mula::cuda
