// Registers the CUDA backend for the CUDA dispatch key: device guard and the
// current stream around the shared driver (../dynamic_conv_driver.h), whose
// table entry for CUDA is dynamic_conv_cuda_backend.h.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../dynamic_conv_driver.h"
#include "dynamic_conv_cuda_backend.h"

namespace mula {
namespace {

const Backend kCudaBackend{"cuda", &cuda::prepare, &cuda::forward, &cuda::backward};

void* current_stream() { return at::cuda::getCurrentCUDAStream().stream(); }

at::Tensor dynamic_conv2d_cuda(const at::Tensor& input, const at::Tensor& weight,
                               const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                               at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  const c10::cuda::CUDAGuard device_guard(input.device());
  return forward(kCudaBackend, input, weight, bias, stride, padding, dilation, groups,
                 current_stream());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> dynamic_conv2d_backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
    std::array<bool, 3> output_mask) {
  const c10::cuda::CUDAGuard device_guard(input.device());
  return backward(kCudaBackend, grad_output, input, weight, stride, padding, dilation, groups,
                  output_mask, current_stream());
}

}  // namespace

TORCH_LIBRARY_IMPL(mula_ops, CUDA, m) {
  m.impl("dynamic_conv2d", &dynamic_conv2d_cuda);
  m.impl("dynamic_conv2d_backward", &dynamic_conv2d_backward_cuda);
}

}  // namespace mula
