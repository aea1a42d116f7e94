// The torch-side driver, the one path from an operator call to a backend:
// check the arguments (the same messages on every device), make the operands
// contiguous, allocate the outputs (per output_mask for the backward), let
// the backend prepare (its own limits, its scratch), call it, and give the
// output the input's memory format. Each device's registration file passes
// its entry of the backend table (dynamic_conv_problem.h) and its stream.
#pragma once

#include <ATen/EmptyTensor.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sum.h>
#include <c10/util/Exception.h>

#include <array>
#include <optional>
#include <stdexcept>
#include <tuple>

#include "dynamic_conv_problem.h"

namespace mula {

inline void check_pair(at::IntArrayRef values, const char* name) {
  TORCH_CHECK(values.size() == 2, "dynamic_conv2d: expected ", name,
              " to have 2 values (height, width), got ", values.size());
}

// Validates the forward arguments and derives every size the kernels need.
inline ConvShape check_arguments(const at::Tensor& input, const at::Tensor& weight,
                                 const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                 at::IntArrayRef padding, at::IntArrayRef dilation,
                                 int64_t groups) {
  TORCH_CHECK(input.dim() == 4, "dynamic_conv2d: expected input to be 4-D (N, C_in, H, W), got ",
              input.dim(), "-D tensor of shape ", input.sizes());
  TORCH_CHECK(weight.dim() == 5,
              "dynamic_conv2d: expected weight to be 5-D "
              "(N, C_out, C_in / groups, kH, kW), got ",
              weight.dim(), "-D tensor of shape ", weight.sizes());
  TORCH_CHECK(input.device() == weight.device(),
              "dynamic_conv2d: expected weight on the same device as input (", input.device(),
              "), got ", weight.device());
  TORCH_CHECK(input.scalar_type() == weight.scalar_type(),
              "dynamic_conv2d: expected weight to have the same dtype as input (",
              input.scalar_type(), "), got ", weight.scalar_type());
  const auto dtype = input.scalar_type();
  TORCH_CHECK(
      dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf || dtype == at::kBFloat16,
      "dynamic_conv2d: expected input of dtype float32, float64, "
      "float16 or bfloat16, got ",
      dtype);
  check_pair(stride, "stride");
  check_pair(padding, "padding");
  check_pair(dilation, "dilation");

  ConvShape p;
  p.batch = input.size(0);
  p.in_channels = input.size(1);
  p.in_height = input.size(2);
  p.in_width = input.size(3);
  p.out_channels = weight.size(1);
  p.kernel_h = weight.size(3);
  p.kernel_w = weight.size(4);
  p.stride_h = stride[0];
  p.stride_w = stride[1];
  p.pad_h = padding[0];
  p.pad_w = padding[1];
  p.dilation_h = dilation[0];
  p.dilation_w = dilation[1];
  p.groups = groups;

  TORCH_CHECK(weight.size(0) == p.batch,
              "dynamic_conv2d: expected weight.size(0) to equal the batch size "
              "of input (",
              p.batch, "), got ", weight.size(0));
  TORCH_CHECK(groups > 0, "dynamic_conv2d: expected groups > 0, got ", groups);
  TORCH_CHECK(p.in_channels % groups == 0, "dynamic_conv2d: expected input channels (",
              p.in_channels, ") to be divisible by groups (", groups, ")");
  TORCH_CHECK(p.out_channels % groups == 0,
              "dynamic_conv2d: expected weight.size(1) (output channels, ", p.out_channels,
              ") to be divisible by groups (", groups, ")");
  TORCH_CHECK(weight.size(2) == p.in_channels / groups,
              "dynamic_conv2d: expected weight.size(2) to equal input channels "
              "/ groups (",
              p.in_channels / groups, "), got ", weight.size(2));
  TORCH_CHECK(p.kernel_h > 0 && p.kernel_w > 0,
              "dynamic_conv2d: expected a non-empty kernel, got weight of shape ", weight.sizes());
  TORCH_CHECK(p.stride_h > 0 && p.stride_w > 0, "dynamic_conv2d: expected stride > 0, got ",
              stride);
  TORCH_CHECK(p.dilation_h > 0 && p.dilation_w > 0, "dynamic_conv2d: expected dilation > 0, got ",
              dilation);
  TORCH_CHECK(p.pad_h >= 0 && p.pad_w >= 0, "dynamic_conv2d: expected padding >= 0, got ", padding);

  const int64_t span_h = p.dilation_h * (p.kernel_h - 1) + 1;
  const int64_t span_w = p.dilation_w * (p.kernel_w - 1) + 1;
  const int64_t padded_h = p.in_height + 2 * p.pad_h;
  const int64_t padded_w = p.in_width + 2 * p.pad_w;
  TORCH_CHECK(padded_h >= span_h && padded_w >= span_w,
              "dynamic_conv2d: expected the padded input (", padded_h, " x ", padded_w,
              ") to be at least as large as the dilated kernel (", span_h, " x ", span_w,
              "); the output size would be empty");
  p.out_height = output_size(p.in_height, p.kernel_h, p.stride_h, p.pad_h, p.dilation_h);
  p.out_width = output_size(p.in_width, p.kernel_w, p.stride_w, p.pad_w, p.dilation_w);

  if (bias.has_value() && bias->defined()) {
    const auto& b = *bias;
    TORCH_CHECK(b.device() == input.device(),
                "dynamic_conv2d: expected bias on the same device as input (", input.device(),
                "), got ", b.device());
    TORCH_CHECK(b.scalar_type() == dtype,
                "dynamic_conv2d: expected bias to have the same dtype as input (", dtype, "), got ",
                b.scalar_type());
    const bool shared = b.dim() == 1 && b.size(0) == p.out_channels;
    const bool per_sample = b.dim() == 2 && b.size(0) == p.batch && b.size(1) == p.out_channels;
    TORCH_CHECK(shared || per_sample, "dynamic_conv2d: expected bias of shape (C_out,) = (",
                p.out_channels, ",) or (N, C_out) = (", p.batch, ", ", p.out_channels, "), got ",
                b.sizes());
  }
  return p;
}

inline void check_grad_output(const at::Tensor& grad_output, const at::Tensor& input,
                              const ConvShape& p) {
  TORCH_CHECK(grad_output.dim() == 4 && grad_output.size(0) == p.batch &&
                  grad_output.size(1) == p.out_channels && grad_output.size(2) == p.out_height &&
                  grad_output.size(3) == p.out_width,
              "dynamic_conv2d_backward: expected grad_output of shape (", p.batch, ", ",
              p.out_channels, ", ", p.out_height, ", ", p.out_width, "), got ",
              grad_output.sizes());
  TORCH_CHECK(
      grad_output.device() == input.device() && grad_output.scalar_type() == input.scalar_type(),
      "dynamic_conv2d_backward: expected grad_output with the device "
      "and dtype of input");
}

inline DType dtype_of(const at::Tensor& tensor) {
  switch (tensor.scalar_type()) {
    case at::kFloat: return DType::kFloat;
    case at::kDouble: return DType::kDouble;
    case at::kHalf: return DType::kHalf;
    case at::kBFloat16: return DType::kBFloat16;
    default: TORCH_CHECK(false, "dynamic_conv2d: unsupported dtype ", tensor.scalar_type());
  }
}

// The backend's own limits, as a torch error; returns its scratch bytes.
inline std::size_t prepare(const Backend& backend, const ConvShape& shape, DType dtype) {
  try {
    return backend.prepare(shape, dtype);
  } catch (const std::exception& error) {
    TORCH_CHECK(false, error.what());
  }
}

// at::empty, or with a backend's own allocator (for its outputs) the same
// tensor in memory from it.
inline at::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options,
                        c10::Allocator* allocator) {
  if (allocator == nullptr) return at::empty(sizes, options);
  return at::detail::empty_generic(sizes, allocator,
                                   c10::DispatchKeySet(options.computeDispatchKey()),
                                   options.dtype().toScalarType(), std::nullopt);
}

inline const void* data_or_null(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr() : nullptr;
}

inline at::Tensor forward(const Backend& backend, const at::Tensor& input, const at::Tensor& weight,
                          const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                          at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                          void* stream, c10::Allocator* allocator = nullptr) {
  const ConvShape shape = check_arguments(input, weight, bias, stride, padding, dilation, groups);
  const DType dtype = dtype_of(input);
  prepare(backend, shape, dtype);
  at::Tensor output =
      empty({shape.batch, shape.out_channels, shape.out_height, shape.out_width},
            input.options(), allocator);
  if (output.numel() > 0) {
    const at::Tensor input_c = input.contiguous();
    const at::Tensor weight_c = weight.contiguous();
    const at::Tensor bias_c =
        bias.has_value() && bias->defined() ? bias->contiguous() : at::Tensor();
    backend.forward(ForwardArgs{shape, dtype, input_c.const_data_ptr(), weight_c.const_data_ptr(),
                                data_or_null(bias_c), bias_c.defined() && bias_c.dim() == 2,
                                output.mutable_data_ptr()},
                    stream);
  }
  // The kernels write NCHW; a channels_last input gets a channels_last copy,
  // as F.conv2d would return.
  return output.contiguous(input.suggest_memory_format());
}

inline std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(
    const Backend& backend, const at::Tensor& grad_output, const at::Tensor& input,
    const at::Tensor& weight, at::IntArrayRef stride, at::IntArrayRef padding,
    at::IntArrayRef dilation, int64_t groups, std::array<bool, 3> output_mask, void* stream,
    c10::Allocator* allocator = nullptr) {
  const ConvShape shape =
      check_arguments(input, weight, std::nullopt, stride, padding, dilation, groups);
  check_grad_output(grad_output, input, shape);
  const DType dtype = dtype_of(input);
  const std::size_t workspace_bytes = prepare(backend, shape, dtype);
  const auto options = input.options();
  const auto requested = [&](int index, at::IntArrayRef sizes) {
    return output_mask[index] ? empty(sizes, options, allocator) : at::empty({0}, options);
  };
  at::Tensor grad_input = requested(0, input.sizes());
  at::Tensor grad_weight = requested(1, weight.sizes());
  at::Tensor grad_bias = requested(2, {shape.batch, shape.out_channels});
  const auto wanted = [](at::Tensor& t, bool asked) {
    return asked && t.numel() > 0 ? t.mutable_data_ptr() : nullptr;
  };
  BackwardArgs args{shape,
                    dtype,
                    nullptr,
                    nullptr,
                    nullptr,
                    wanted(grad_input, output_mask[0]),
                    wanted(grad_weight, output_mask[1]),
                    wanted(grad_bias, output_mask[2])};
  if (args.grad_bias != nullptr && shape.in_channels == 0) {
    grad_bias.copy_(grad_output.sum({2, 3}));  // no input planes to fold the bias sum into
    args.grad_bias = nullptr;
  }
  if (args.grad_input == nullptr && args.grad_weight == nullptr && args.grad_bias == nullptr) {
    return {grad_input, grad_weight, grad_bias};
  }
  const at::Tensor grad_output_c = grad_output.contiguous();
  const at::Tensor input_c = input.contiguous();
  const at::Tensor weight_c = weight.contiguous();
  args.grad_output = grad_output_c.const_data_ptr();
  args.input = input_c.const_data_ptr();
  args.weight = weight_c.const_data_ptr();
  at::Tensor workspace;
  if (workspace_bytes > 0)
    workspace = at::empty({static_cast<int64_t>(workspace_bytes)}, options.dtype(at::kByte));
  backend.backward(args, workspace.defined() ? workspace.mutable_data_ptr() : nullptr, stream);
  return {grad_input, grad_weight, grad_bias};
}

}  // namespace mula
