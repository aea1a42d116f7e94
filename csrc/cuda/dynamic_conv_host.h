// Torch-side host code of the CUDA kernels: argument checks (through
// mula::make_conv_params), contiguous operands, allocation, dtype and launch.
// Shared by the CUDA registration (dynamic_conv_cuda.cpp) and the emulated
// build the tests use (csrc/emulator/emulated_ops.cpp), which differ only in
// the stream they pass and in how the launchers are compiled.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <climits>
#include <optional>
#include <tuple>

#include "../dynamic_conv_params.h"
#include "dynamic_conv_launch.h"

namespace mula::cuda {

inline ScalarType scalar_type_of(const at::Tensor& tensor) {
  switch (tensor.scalar_type()) {
    case at::kFloat: return ScalarType::kFloat;
    case at::kDouble: return ScalarType::kDouble;
    case at::kHalf: return ScalarType::kHalf;
    case at::kBFloat16: return ScalarType::kBFloat16;
    default: TORCH_CHECK(false, "dynamic_conv2d: unsupported dtype ", tensor.scalar_type());
  }
}

inline ConvShape make_shape(const ConvParams& p, ScalarType type) {
  // Offsets across planes are 64-bit in the kernels; within a plane they are int.
  TORCH_CHECK(p.in_height * p.in_width <= INT_MAX && p.out_height * p.out_width <= INT_MAX,
              "dynamic_conv2d (CUDA): expected input and output planes of at most 2^31 - 1 "
              "elements, got ", p.in_height, " x ", p.in_width, " -> ", p.out_height, " x ",
              p.out_width);
  TORCH_CHECK(p.kernel_h * p.kernel_w <= INT_MAX && p.pad_h <= INT_MAX / 4 && p.pad_w <= INT_MAX / 4 &&
                  p.stride_h <= INT_MAX && p.stride_w <= INT_MAX &&
                  p.dilation_h * p.kernel_h <= INT_MAX / 4 && p.dilation_w * p.kernel_w <= INT_MAX / 4,
              "dynamic_conv2d (CUDA): kernel size, stride, padding or dilation too large");
  ConvShape s{};
  s.batch = p.batch;
  s.in_channels = p.in_channels;
  s.out_channels = p.out_channels;
  s.groups = p.groups;
  s.in_height = static_cast<int>(p.in_height);
  s.in_width = static_cast<int>(p.in_width);
  s.out_height = static_cast<int>(p.out_height);
  s.out_width = static_cast<int>(p.out_width);
  s.kernel_h = static_cast<int>(p.kernel_h);
  s.kernel_w = static_cast<int>(p.kernel_w);
  s.stride_h = static_cast<int>(p.stride_h);
  s.stride_w = static_cast<int>(p.stride_w);
  s.pad_h = static_cast<int>(p.pad_h);
  s.pad_w = static_cast<int>(p.pad_w);
  s.dilation_h = static_cast<int>(p.dilation_h);
  s.dilation_w = static_cast<int>(p.dilation_w);
  TORCH_CHECK(fits_shared_memory(s, type),
              "dynamic_conv2d (CUDA): the dilated kernel (", p.dilation_h * (p.kernel_h - 1) + 1,
              " x ", p.dilation_w * (p.kernel_w - 1) + 1,
              ") is too large for the kernels' shared-memory tile (48 KiB per block)");
  return s;
}

inline void check_launch(cudaError_t status, const char* kernel) {
  TORCH_CHECK(status == cudaSuccess, "dynamic_conv2d: CUDA ", kernel,
              " kernel launch failed: ", cudaGetErrorString(status));
}

inline at::Tensor forward(const at::Tensor& input, const at::Tensor& weight,
                          const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                          at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                          cudaStream_t stream) {
  const ConvParams p = make_conv_params(input, weight, bias, stride, padding, dilation, groups);
  const ScalarType type = scalar_type_of(input);
  const ConvShape shape = make_shape(p, type);
  at::Tensor output =
      at::empty({p.batch, p.out_channels, p.out_height, p.out_width}, input.options());
  if (output.numel() == 0) return in_memory_format_of(output, input);
  const at::Tensor input_c = input.contiguous();
  const at::Tensor weight_c = weight.contiguous();
  at::Tensor bias_c;
  if (bias.has_value() && bias->defined()) bias_c = bias->contiguous();
  check_launch(launch_forward(shape, type, input_c.const_data_ptr(), weight_c.const_data_ptr(),
                              bias_c.defined() ? bias_c.const_data_ptr() : nullptr,
                              bias_c.defined() && bias_c.dim() == 2, output.mutable_data_ptr(),
                              stream),
               "forward");
  return in_memory_format_of(output, input);
}

inline std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
    std::array<bool, 3> output_mask, cudaStream_t stream) {
  const ConvParams p =
      make_conv_params(input, weight, std::nullopt, stride, padding, dilation, groups);
  check_grad_output(grad_output, input, p);
  const ScalarType type = scalar_type_of(input);
  const ConvShape shape = make_shape(p, type);
  const auto options = input.options();
  at::Tensor grad_input = output_mask[0] ? at::empty(input.sizes(), options) : at::empty({0}, options);
  at::Tensor grad_weight =
      output_mask[1] ? at::empty(weight.sizes(), options) : at::empty({0}, options);
  at::Tensor grad_bias = output_mask[2] ? at::empty({p.batch, p.out_channels}, options)
                                        : at::empty({0}, options);
  const bool want_input = output_mask[0] && grad_input.numel() > 0;
  const bool want_weight = output_mask[1] && grad_weight.numel() > 0;
  bool want_bias = output_mask[2] && grad_bias.numel() > 0;
  if (want_bias && p.in_channels_per_group() == 0) {
    grad_bias = grad_output.sum({2, 3});  // no input planes to fold the bias sum into
    want_bias = false;
  }
  if (want_input || want_weight || want_bias) {
    const at::Tensor grad_output_c = grad_output.contiguous();
    const at::Tensor input_c = input.contiguous();
    const at::Tensor weight_c = weight.contiguous();
    const at::Tensor workspace =
        at::empty({static_cast<int64_t>(backward_workspace_bytes(shape, type))},
                  options.dtype(at::kByte));
    check_launch(launch_backward(shape, type, grad_output_c.const_data_ptr(),
                                 input_c.const_data_ptr(), weight_c.const_data_ptr(),
                                 want_input ? grad_input.mutable_data_ptr() : nullptr,
                                 want_weight ? grad_weight.mutable_data_ptr() : nullptr,
                                 want_bias ? grad_bias.mutable_data_ptr() : nullptr,
                                 workspace.numel() > 0 ? workspace.mutable_data_ptr() : nullptr,
                                 stream),
                 "backward");
  }
  return {grad_input, grad_weight, grad_bias};
}

}  // namespace mula::cuda
