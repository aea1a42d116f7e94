// Shape and argument checking shared by every implementation (CPU, CUDA,
// and the emulated CUDA kernels), so that all of them reject bad input with
// the same messages and agree on the output shape.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <optional>

namespace mula {

struct ConvParams {
  int64_t batch = 0;
  int64_t in_channels = 0, in_height = 0, in_width = 0;
  int64_t out_channels = 0, kernel_h = 0, kernel_w = 0;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;
  int64_t out_height = 0, out_width = 0;

  int64_t in_channels_per_group() const { return in_channels / groups; }
  int64_t out_channels_per_group() const { return out_channels / groups; }
  // One input channel feeds exactly one output channel: MuLA's case.
  bool is_depthwise() const {
    return groups == in_channels && out_channels == in_channels;
  }
};

inline void check_pair(at::IntArrayRef values, const char* name) {
  TORCH_CHECK(values.size() == 2, "dynamic_conv2d: expected ", name,
              " to have 2 values (height, width), got ", values.size());
}

// Validates the forward arguments and derives every size the kernels need.
inline ConvParams make_conv_params(const at::Tensor& input,
                                   const at::Tensor& weight,
                                   const std::optional<at::Tensor>& bias,
                                   at::IntArrayRef stride,
                                   at::IntArrayRef padding,
                                   at::IntArrayRef dilation, int64_t groups) {
  TORCH_CHECK(input.dim() == 4,
              "dynamic_conv2d: expected input to be 4-D (N, C_in, H, W), got ",
              input.dim(), "-D tensor of shape ", input.sizes());
  TORCH_CHECK(weight.dim() == 5,
              "dynamic_conv2d: expected weight to be 5-D "
              "(N, C_out, C_in / groups, kH, kW), got ",
              weight.dim(), "-D tensor of shape ", weight.sizes());
  TORCH_CHECK(input.device() == weight.device(),
              "dynamic_conv2d: expected weight on the same device as input (",
              input.device(), "), got ", weight.device());
  TORCH_CHECK(input.scalar_type() == weight.scalar_type(),
              "dynamic_conv2d: expected weight to have the same dtype as input (",
              input.scalar_type(), "), got ", weight.scalar_type());
  const auto dtype = input.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble ||
                  dtype == at::kHalf || dtype == at::kBFloat16,
              "dynamic_conv2d: expected input of dtype float32, float64, "
              "float16 or bfloat16, got ", dtype);
  check_pair(stride, "stride");
  check_pair(padding, "padding");
  check_pair(dilation, "dilation");

  ConvParams p;
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
              "of input (", p.batch, "), got ", weight.size(0));
  TORCH_CHECK(groups > 0, "dynamic_conv2d: expected groups > 0, got ", groups);
  TORCH_CHECK(p.in_channels % groups == 0,
              "dynamic_conv2d: expected input channels (", p.in_channels,
              ") to be divisible by groups (", groups, ")");
  TORCH_CHECK(p.out_channels % groups == 0,
              "dynamic_conv2d: expected weight.size(1) (output channels, ",
              p.out_channels, ") to be divisible by groups (", groups, ")");
  TORCH_CHECK(weight.size(2) == p.in_channels / groups,
              "dynamic_conv2d: expected weight.size(2) to equal input channels "
              "/ groups (", p.in_channels / groups, "), got ", weight.size(2));
  TORCH_CHECK(p.kernel_h > 0 && p.kernel_w > 0,
              "dynamic_conv2d: expected a non-empty kernel, got weight of shape ",
              weight.sizes());
  TORCH_CHECK(p.stride_h > 0 && p.stride_w > 0,
              "dynamic_conv2d: expected stride > 0, got ", stride);
  TORCH_CHECK(p.dilation_h > 0 && p.dilation_w > 0,
              "dynamic_conv2d: expected dilation > 0, got ", dilation);
  TORCH_CHECK(p.pad_h >= 0 && p.pad_w >= 0,
              "dynamic_conv2d: expected padding >= 0, got ", padding);

  const int64_t span_h = p.dilation_h * (p.kernel_h - 1) + 1;
  const int64_t span_w = p.dilation_w * (p.kernel_w - 1) + 1;
  const int64_t padded_h = p.in_height + 2 * p.pad_h;
  const int64_t padded_w = p.in_width + 2 * p.pad_w;
  TORCH_CHECK(padded_h >= span_h && padded_w >= span_w,
              "dynamic_conv2d: expected the padded input (", padded_h, " x ",
              padded_w, ") to be at least as large as the dilated kernel (",
              span_h, " x ", span_w, "); the output size would be empty");
  p.out_height = (padded_h - span_h) / p.stride_h + 1;
  p.out_width = (padded_w - span_w) / p.stride_w + 1;

  if (bias.has_value() && bias->defined()) {
    const auto& b = *bias;
    TORCH_CHECK(b.device() == input.device(),
                "dynamic_conv2d: expected bias on the same device as input (",
                input.device(), "), got ", b.device());
    TORCH_CHECK(b.scalar_type() == dtype,
                "dynamic_conv2d: expected bias to have the same dtype as input (",
                dtype, "), got ", b.scalar_type());
    const bool shared = b.dim() == 1 && b.size(0) == p.out_channels;
    const bool per_sample = b.dim() == 2 && b.size(0) == p.batch &&
                            b.size(1) == p.out_channels;
    TORCH_CHECK(shared || per_sample,
                "dynamic_conv2d: expected bias of shape (C_out,) = (",
                p.out_channels, ",) or (N, C_out) = (", p.batch, ", ",
                p.out_channels, "), got ", b.sizes());
  }
  return p;
}

// The output keeps the input's memory format, as F.conv2d does (the kernels
// write NCHW; a channels_last input gets a channels_last copy of it).
inline at::Tensor in_memory_format_of(const at::Tensor& output, const at::Tensor& input) {
  return output.contiguous(input.suggest_memory_format());
}

inline void check_grad_output(const at::Tensor& grad_output,
                              const at::Tensor& input, const ConvParams& p) {
  TORCH_CHECK(grad_output.dim() == 4 && grad_output.size(0) == p.batch &&
                  grad_output.size(1) == p.out_channels &&
                  grad_output.size(2) == p.out_height &&
                  grad_output.size(3) == p.out_width,
              "dynamic_conv2d_backward: expected grad_output of shape (",
              p.batch, ", ", p.out_channels, ", ", p.out_height, ", ",
              p.out_width, "), got ", grad_output.sizes());
  TORCH_CHECK(grad_output.device() == input.device() &&
                  grad_output.scalar_type() == input.scalar_type(),
              "dynamic_conv2d_backward: expected grad_output with the device "
              "and dtype of input");
}

}  // namespace mula
