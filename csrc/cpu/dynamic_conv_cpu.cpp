// CPU implementations of mula_ops::dynamic_conv2d and its fused backward:
// argument checks, layout and allocation here; the arithmetic in the
// per-plane kernels (plane_kernels_impl.h), run in parallel over planes.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>

#include "../dynamic_conv_params.h"
#include "plane_kernels.h"

// With torch's OpenMP backend at::parallel_for is an OpenMP loop compiled
// into this file: built without OpenMP it would quietly run on one thread.
#if AT_PARALLEL_OPENMP && !defined(_OPENMP)
#error "mula: compile with -fopenmp (torch uses the OpenMP parallel backend)"
#endif

namespace mula {
namespace {

cpu::DType kernel_dtype(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat: return cpu::DType::kFloat;
    case at::kDouble: return cpu::DType::kDouble;
    case at::kHalf: return cpu::DType::kHalf;
    case at::kBFloat16: return cpu::DType::kBFloat16;
    default: TORCH_CHECK(false, "dynamic_conv2d: unsupported dtype ", dtype);
  }
}

cpu::PlaneShape plane_shape(const ConvParams& p) {
  return cpu::PlaneShape{p.batch, p.in_channels, p.in_height, p.in_width,
                         p.out_channels, p.out_height, p.out_width,
                         p.kernel_h, p.kernel_w, p.stride_h, p.stride_w,
                         p.pad_h, p.pad_w, p.dilation_h, p.dilation_w, p.groups};
}

// Runs a kernel over `items` planes. Threads take chunks of planes from a
// shared counter rather than one fixed share each, so a core slowed by other
// processes does not hold up the rest; which thread computes a plane never
// changes its bits. A chunk is at least one plane (a few microseconds of
// work) and the kernel allocates its scratch planes once per chunk.
template <typename Args>
void for_each_plane(void (*kernel)(const Args&, int64_t, int64_t), const Args& args,
                    int64_t items) {
  const int64_t threads = at::get_num_threads();
  const int64_t chunk = std::max<int64_t>(1, items / (threads * 8));
  std::atomic<int64_t> next{0};
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
    for (int64_t begin = next.fetch_add(chunk); begin < items; begin = next.fetch_add(chunk)) {
      kernel(args, begin, std::min(begin + chunk, items));
    }
  });
}

at::Tensor dynamic_conv2d_cpu(const at::Tensor& input, const at::Tensor& weight,
                              const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                              at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  const ConvParams p = make_conv_params(input, weight, bias, stride, padding, dilation, groups);
  const at::Tensor input_c = input.contiguous();
  const at::Tensor weight_c = weight.contiguous();
  const bool has_bias = bias.has_value() && bias->defined();
  const at::Tensor bias_c = has_bias ? bias->contiguous() : at::Tensor();
  at::Tensor output =
      at::empty({p.batch, p.out_channels, p.out_height, p.out_width}, input.options());
  if (output.numel() == 0) return in_memory_format_of(output, input);

  const cpu::ForwardArgs args{plane_shape(p),
                              kernel_dtype(input.scalar_type()),
                              input_c.const_data_ptr(),
                              weight_c.const_data_ptr(),
                              has_bias ? bias_c.const_data_ptr() : nullptr,
                              has_bias && bias_c.dim() == 2,
                              output.mutable_data_ptr()};
  for_each_plane(cpu::select_plane_kernels().forward, args, p.batch * p.out_channels);
  return in_memory_format_of(output, input);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> dynamic_conv2d_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
    std::array<bool, 3> output_mask) {
  const ConvParams p =
      make_conv_params(input, weight, std::nullopt, stride, padding, dilation, groups);
  check_grad_output(grad_output, input, p);
  const auto options = input.options();
  const auto requested = [&](int index, at::IntArrayRef sizes) {
    return output_mask[index] ? at::empty(sizes, options) : at::empty({0}, options);
  };
  at::Tensor grad_input = requested(0, input.sizes());
  at::Tensor grad_weight = requested(1, weight.sizes());
  at::Tensor grad_bias = requested(2, {p.batch, p.out_channels});
  if (p.batch == 0) return {grad_input, grad_weight, grad_bias};

  const at::Tensor grad_output_c = grad_output.contiguous();
  const at::Tensor input_c = input.contiguous();
  const at::Tensor weight_c = weight.contiguous();
  const auto pointer_if = [](bool wanted, at::Tensor& t) {
    return wanted && t.numel() > 0 ? t.mutable_data_ptr() : nullptr;
  };
  const cpu::BackwardArgs args{plane_shape(p),
                               kernel_dtype(input.scalar_type()),
                               grad_output_c.const_data_ptr(),
                               input_c.const_data_ptr(),
                               weight_c.const_data_ptr(),
                               pointer_if(output_mask[0], grad_input),
                               pointer_if(output_mask[1], grad_weight),
                               pointer_if(output_mask[2], grad_bias)};
  const cpu::PlaneKernels& kernels = cpu::select_plane_kernels();
  // Depthwise: one fused pass per plane computes all three gradients.
  // Otherwise grad_input, which gathers over a group's grad_output planes,
  // takes a second pass over the input planes.
  const bool fused_input = p.is_depthwise();
  if (args.grad_weight != nullptr || args.grad_bias != nullptr ||
      (fused_input && args.grad_input != nullptr)) {
    for_each_plane(kernels.backward_output_planes, args, p.batch * p.out_channels);
  }
  if (!fused_input && args.grad_input != nullptr) {
    for_each_plane(kernels.backward_input_planes, args, p.batch * p.in_channels);
  }
  return {grad_input, grad_weight, grad_bias};
}

}  // namespace

TORCH_LIBRARY_IMPL(mula_ops, CPU, m) {
  m.impl("dynamic_conv2d", &dynamic_conv2d_cpu);
  m.impl("dynamic_conv2d_backward", &dynamic_conv2d_backward_cpu);
}

}  // namespace mula
