// The operator's plain data, torch-free: the one description of a per-sample
// convolution that every backend (CPU kernels, CUDA kernels, the emulated
// CUDA kernels) and the torch-side driver (dynamic_conv_driver.h) read.
//
// Functions here are `static`: the CPU kernels include this header in
// translation units built for different instruction sets, and internal
// linkage keeps the linker from handing one build another build's copy.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mula {

enum class DType { kFloat, kDouble, kHalf, kBFloat16 };

static constexpr std::size_t element_bytes(DType dtype) {
  return dtype == DType::kDouble ? 8 : dtype == DType::kFloat ? 4 : 2;
}

// input (N, C_in, H, W), weight (N, C_out, C_in / groups, kH, kW), output
// (N, C_out, H_out, W_out): contiguous NCHW tensors of one dtype.
struct ConvShape {
  std::int64_t batch = 0;
  std::int64_t in_channels = 0, in_height = 0, in_width = 0;
  std::int64_t out_channels = 0, out_height = 0, out_width = 0;
  std::int64_t kernel_h = 0, kernel_w = 0;
  std::int64_t stride_h = 1, stride_w = 1;
  std::int64_t pad_h = 0, pad_w = 0;
  std::int64_t dilation_h = 1, dilation_w = 1;
  std::int64_t groups = 1;
};

// F.conv2d's output size along one axis (the Python twin is in
// mula_ops/_arguments.py).
static constexpr std::int64_t output_size(std::int64_t size, std::int64_t kernel,
                                          std::int64_t stride, std::int64_t padding,
                                          std::int64_t dilation) {
  return (size + 2 * padding - dilation * (kernel - 1) - 1) / stride + 1;
}

// One input channel feeds exactly one output channel: MuLA's case.
static inline bool is_depthwise(const ConvShape& s) {
  return s.groups == s.in_channels && s.out_channels == s.in_channels;
}

// bias is null, (C_out,) or, when bias_per_sample, (N, C_out).
struct ForwardArgs {
  ConvShape shape;
  DType dtype;
  const void* input;
  const void* weight;
  const void* bias;
  bool bias_per_sample;
  void* output;
};

// A null gradient pointer means that gradient was not asked for.
struct BackwardArgs {
  ConvShape shape;
  DType dtype;
  const void* grad_output;
  const void* input;
  const void* weight;
  void* grad_input;   // (N, C_in, H, W)
  void* grad_weight;  // (N, C_out, C_in / groups, kH, kW)
  void* grad_bias;    // (N, C_out), per sample
};

// One backend: an entry of the driver's table. `prepare` checks the
// backend's own limits (it throws std::invalid_argument with a message for
// the user) and returns the scratch bytes the backward needs; `stream` is
// the backend's queue (CUDA's current stream) or null.
struct Backend {
  const char* name;
  std::size_t (*prepare)(const ConvShape& shape, DType dtype);
  void (*forward)(const ForwardArgs& args, void* stream);
  void (*backward)(const BackwardArgs& args, void* workspace, void* stream);
};

}  // namespace mula
