// The operator schemas, written once: registered as mula_ops::* by ops.cpp
// and, for the tests of the emulated CUDA kernels, as mula_emulated::*.
#pragma once

namespace mula {

// input (N, C_in, H, W), weight (N, C_out, C_in / groups, kH, kW),
// bias None, (C_out,) or (N, C_out) -> (N, C_out, H_out, W_out).
inline constexpr const char* kForwardSchema =
    "dynamic_conv2d(Tensor input, Tensor weight, Tensor? bias, "
    "int[2] stride, int[2] padding, int[2] dilation, int groups) -> Tensor";

// Fused backward: one pass over grad_output. Returns (grad_input,
// grad_weight, grad_bias) where grad_bias is per sample, (N, C_out); an
// output not asked for in output_mask is returned as an empty tensor.
inline constexpr const char* kBackwardSchema =
    "dynamic_conv2d_backward(Tensor grad_output, Tensor input, "
    "Tensor weight, int[2] stride, int[2] padding, int[2] dilation, "
    "int groups, bool[3] output_mask) -> (Tensor, Tensor, Tensor)";

}  // namespace mula
