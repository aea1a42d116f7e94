// The emulated CUDA kernels as torch operators on CPU tensors, for the tests
// only (tests/test_cuda_emulated.py builds this with emulated_kernels.cpp and
// -DMULA_CUDA_EMULATION): the same schemas, the same driver and the CUDA
// backend's functions, as the table's emulated-CUDA entry, in a namespace of
// their own: torch.ops.mula_emulated.*.
#include <torch/library.h>

#include "../cuda/dynamic_conv_cuda_backend.h"
#include "../dynamic_conv_driver.h"
#include "../dynamic_conv_schema.h"

namespace mula {
namespace {

const Backend kEmulatedCudaBackend{"cuda (emulated)", &cuda::prepare, &cuda::forward,
                                   &cuda::backward};

at::Tensor dynamic_conv2d_emulated(const at::Tensor& input, const at::Tensor& weight,
                                   const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                   at::IntArrayRef padding, at::IntArrayRef dilation,
                                   int64_t groups) {
  return forward(kEmulatedCudaBackend, input, weight, bias, stride, padding, dilation, groups,
                 nullptr);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> dynamic_conv2d_backward_emulated(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
    std::array<bool, 3> output_mask) {
  return backward(kEmulatedCudaBackend, grad_output, input, weight, stride, padding, dilation,
                  groups, output_mask, nullptr);
}

}  // namespace
}  // namespace mula

TORCH_LIBRARY(mula_emulated, m) {
  m.def(mula::kForwardSchema);
  m.def(mula::kBackwardSchema);
  m.impl("dynamic_conv2d", c10::DispatchKey::CPU, &mula::dynamic_conv2d_emulated);
  m.impl("dynamic_conv2d_backward", c10::DispatchKey::CPU, &mula::dynamic_conv2d_backward_emulated);
}
