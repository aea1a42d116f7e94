// The operator schemas, defined once. Implementations register themselves per
// device (cpu/, cuda/); fake kernels and autograd are registered from Python
// (mula_ops/_registrations.py).
#include <torch/library.h>

TORCH_LIBRARY(mula_ops, m) {
  // input (N, C_in, H, W), weight (N, C_out, C_in / groups, kH, kW),
  // bias None, (C_out,) or (N, C_out) -> (N, C_out, H_out, W_out).
  m.def(
      "dynamic_conv2d(Tensor input, Tensor weight, Tensor? bias, "
      "int[2] stride, int[2] padding, int[2] dilation, int groups) -> Tensor");
  // Fused backward: one pass over grad_output. Returns (grad_input,
  // grad_weight, grad_bias) where grad_bias is per sample, (N, C_out); an
  // output not asked for in output_mask is returned as an empty tensor.
  m.def(
      "dynamic_conv2d_backward(Tensor grad_output, Tensor input, "
      "Tensor weight, int[2] stride, int[2] padding, int[2] dilation, "
      "int groups, bool[3] output_mask) -> (Tensor, Tensor, Tensor)");
}
