// Registers the CUDA kernels (dynamic_conv_kernels.cu) for the CUDA dispatch
// key: device guard and current stream; everything else is dynamic_conv_host.h.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "dynamic_conv_host.h"

namespace {

at::Tensor dynamic_conv2d_cuda(const at::Tensor& input, const at::Tensor& weight,
                               const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                               at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  const c10::cuda::CUDAGuard device_guard(input.device());
  return mula::cuda::forward(input, weight, bias, stride, padding, dilation, groups,
                             at::cuda::getCurrentCUDAStream());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> dynamic_conv2d_backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
    std::array<bool, 3> output_mask) {
  const c10::cuda::CUDAGuard device_guard(input.device());
  return mula::cuda::backward(grad_output, input, weight, stride, padding, dilation, groups,
                              output_mask, at::cuda::getCurrentCUDAStream());
}

}  // namespace

TORCH_LIBRARY_IMPL(mula_ops, CUDA, m) {
  m.impl("dynamic_conv2d", &dynamic_conv2d_cuda);
  m.impl("dynamic_conv2d_backward", &dynamic_conv2d_backward_cuda);
}
