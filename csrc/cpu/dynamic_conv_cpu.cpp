// The CPU backend: its entry of the backend table runs the per-plane kernels
// of the instruction set this CPU supports (plane_kernels.h) in parallel
// over planes; the torch side is the shared driver (dynamic_conv_driver.h).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>

#include "../dynamic_conv_driver.h"
#include "huge_pages.h"
#include "output_pool.h"
#include "plane_kernels.h"

// With torch's OpenMP backend at::parallel_for is an OpenMP loop compiled
// into this file: built without OpenMP it would quietly run on one thread.
#if AT_PARALLEL_OPENMP && !defined(_OPENMP)
#error "mula: compile with -fopenmp (torch uses the OpenMP parallel backend)"
#endif

namespace mula {
namespace {

// Runs a kernel over `items` planes. Threads take chunks of planes from a
// shared counter rather than one fixed share each, so a core slowed by other
// processes does not hold up the rest; which thread computes a plane never
// changes its bits. A chunk is at least one plane (a few microseconds of
// work) and the kernel allocates its scratch planes once per chunk. The
// items of one (sample, group) share staged planes, which a chunk stages
// once: chunks grow towards a whole group (`group_items`) while there are
// still two chunks per thread.
template <typename Args>
void for_each_plane(void (*kernel)(const Args&, int64_t, int64_t), const Args& args,
                    int64_t items, int64_t group_items = 1) {
  const int64_t threads = at::get_num_threads();
  const int64_t chunk = std::max<int64_t>(
      {1, items / (threads * 8), std::min(group_items, items / (threads * 2))});
  std::atomic<int64_t> next{0};
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
    for (int64_t begin = next.fetch_add(chunk); begin < items; begin = next.fetch_add(chunk)) {
      kernel(args, begin, std::min(begin + chunk, items));
    }
  });
}

// The general loops take any shape: nothing to refuse, no scratch to share.
std::size_t prepare_cpu(const ConvShape&, DType) { return 0; }

// Planes the kernels write: huge pages if their memory is fresh (huge_pages.h).
void advise_huge_pages(void* data, int64_t planes, int64_t plane_elements, DType dtype) {
  cpu::advise_huge_pages(
      data, static_cast<std::size_t>(planes * plane_elements) * element_bytes(dtype));
}

void forward_cpu(const ForwardArgs& args, void*) {
  const ConvShape& s = args.shape;
  advise_huge_pages(args.output, s.batch * s.out_channels, s.out_height * s.out_width, args.dtype);
  for_each_plane(cpu::select_plane_kernels().forward, args, s.batch * s.out_channels,
                 s.out_channels / s.groups);
}

void backward_cpu(const BackwardArgs& args, void*, void*) {
  const ConvShape& s = args.shape;
  const cpu::PlaneKernels& kernels = cpu::select_plane_kernels();
  // Depthwise: one fused pass per plane computes all three gradients.
  // Otherwise grad_input, which gathers over a group's grad_output planes,
  // takes a second pass over the input planes.
  const bool fused_input = is_depthwise(s);
  if (args.grad_input != nullptr) {
    advise_huge_pages(args.grad_input, s.batch * s.in_channels, s.in_height * s.in_width,
                      args.dtype);
  }
  if (args.grad_weight != nullptr || args.grad_bias != nullptr ||
      (fused_input && args.grad_input != nullptr)) {
    for_each_plane(kernels.backward_output_planes, args, s.batch * s.out_channels,
                   s.out_channels / s.groups);
  }
  if (!fused_input && args.grad_input != nullptr) {
    for_each_plane(kernels.backward_input_planes, args, s.batch * s.in_channels,
                   s.in_channels / s.groups);
  }
}

const Backend kCpuBackend{"cpu", &prepare_cpu, &forward_cpu, &backward_cpu};

at::Tensor dynamic_conv2d_cpu(const at::Tensor& input, const at::Tensor& weight,
                              const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                              at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  return forward(kCpuBackend, input, weight, bias, stride, padding, dilation, groups, nullptr,
                 cpu::output_allocator());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> dynamic_conv2d_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
    std::array<bool, 3> output_mask) {
  return backward(kCpuBackend, grad_output, input, weight, stride, padding, dilation, groups,
                  output_mask, nullptr, cpu::output_allocator());
}

}  // namespace

TORCH_LIBRARY_IMPL(mula_ops, CPU, m) {
  m.impl("dynamic_conv2d", &dynamic_conv2d_cpu);
  m.impl("dynamic_conv2d_backward", &dynamic_conv2d_backward_cpu);
}

}  // namespace mula
