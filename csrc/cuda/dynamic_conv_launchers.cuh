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
  const Tiling t = choose_tiling(shape, Pass::kBackward, type);
  const std::int64_t tiles = std::int64_t(t.tiles_h) * t.tiles_w;
  if (tiles <= 1) return 0;
  const std::int64_t planes = shape.batch * shape.out_channels * (shape.in_channels / shape.groups);
  return std::size_t(planes) * tiles * (std::size_t(shape.kernel_h) * shape.kernel_w + 1) *
         accumulator_bytes(type);
}

cudaError_t launch_forward(const ForwardArgs& args, cudaStream_t stream) {
  const ConvShape& shape = args.shape;
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
  const Tiling t = choose_tiling(shape, Pass::kBackward, type);
  const std::int64_t planes = shape.batch * shape.in_channels;
  if (planes == 0 || t.tile_h == 0 || t.tile_w == 0) return cudaSuccess;
  const unsigned int blocks = grid_blocks(planes, t);
  if (blocks == 0) return cudaErrorInvalidConfiguration;
  const int tiles = t.tiles_h * t.tiles_w;
  const bool want_sums = args.grad_weight != nullptr || args.grad_bias != nullptr;
  const std::size_t bytes = shared_bytes(shape, Pass::kBackward, t, type);
  return dispatch_type(type, [&](auto tag) {
    using scalar_t = typename decltype(tag)::type;
    using acc_t = typename Numeric<scalar_t>::acc_t;
    auto* partial = want_sums && tiles > 1 ? static_cast<acc_t*>(workspace) : nullptr;
    cudaError_t status = dispatch_backward_kernel_size(shape, [&](auto size) {
      auto kernel = &backward_kernel<scalar_t, decltype(size)::value>;
      return MULA_LAUNCH(
          kernel, dim3(blocks), kBlock, bytes, stream, shape, t,
          static_cast<const scalar_t*>(args.grad_output), static_cast<const scalar_t*>(args.input),
          static_cast<const scalar_t*>(args.weight), partial,
          static_cast<scalar_t*>(args.grad_input), static_cast<scalar_t*>(args.grad_weight),
          static_cast<scalar_t*>(args.grad_bias));
    });
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
                       static_cast<scalar_t*>(args.grad_weight),
                       static_cast<scalar_t*>(args.grad_bias));
  });
}

}  // namespace mula::cuda
