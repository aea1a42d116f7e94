// Autocast for dynamic_conv2d, as for F.conv2d: under autocast the inputs are
// cast to the autocast dtype (float16 / bfloat16) and the kernels compute in
// that dtype with float32 accumulation.
#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

namespace mula {
namespace {

at::Tensor dynamic_conv2d_call(const at::Tensor& input, const at::Tensor& weight,
                               const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                               at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mula_ops::dynamic_conv2d", "")
                       .typed<decltype(dynamic_conv2d_call)>();
  return op.call(input, weight, bias, stride, padding, dilation, groups);
}

template <c10::DeviceType device_type>
at::Tensor dynamic_conv2d_autocast(const at::Tensor& input, const at::Tensor& weight,
                                   const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                   at::IntArrayRef padding, at::IntArrayRef dilation,
                                   int64_t groups) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(
      at::autocast::get_autocast_dispatch_key_from_device_type(device_type));
  const auto dtype = at::autocast::get_lower_precision_fp_from_device_type(device_type);
  return dynamic_conv2d_call(at::autocast::cached_cast(dtype, input, device_type),
                             at::autocast::cached_cast(dtype, weight, device_type),
                             at::autocast::cached_cast(dtype, bias, device_type), stride, padding,
                             dilation, groups);
}

}  // namespace

TORCH_LIBRARY_IMPL(mula_ops, AutocastCPU, m) {
  m.impl("dynamic_conv2d", &dynamic_conv2d_autocast<c10::DeviceType::CPU>);
}

TORCH_LIBRARY_IMPL(mula_ops, AutocastCUDA, m) {
  m.impl("dynamic_conv2d", &dynamic_conv2d_autocast<c10::DeviceType::CUDA>);
}

}  // namespace mula
