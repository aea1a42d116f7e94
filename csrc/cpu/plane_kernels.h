// The interface between the CPU backend (dynamic_conv_cpu.cpp, which
// includes torch) and the per-plane kernels (kernels_*.cpp, which do not):
// tables of entry points over the operator's plain data
// (../dynamic_conv_problem.h).
//
// The kernels are compiled once per instruction set from one source
// (plane_kernels_impl.h) and chosen at run time, so the same binary runs on a
// CPU without AVX-512. Keeping torch headers out of those translation units
// keeps them quick to compile and keeps torch's inline functions from being
// compiled for an instruction set the CPU may lack. Only plain data and
// declarations live here: an inline function shared with the ISA-specific
// translation units could be linked in its AVX-512 build.
#pragma once

#include <cstdint>

#include "../dynamic_conv_problem.h"

namespace mula::cpu {

// Each entry processes the work items [begin, end) in order; an item is one
// (sample, channel) plane, item = n * channels + c. Items never share an
// output element, so any partition of the range gives the same bits.
struct PlaneKernels {
  const char* isa;
  // Items over (n, c_out): output[n, c_out].
  void (*forward)(const ForwardArgs&, int64_t begin, int64_t end);
  // Items over (n, c_out): grad_weight[n, c_out], grad_bias[n, c_out] and,
  // when the convolution is depthwise, grad_input[n, c_out] too, all from one
  // staged grad_output plane (the fused backward).
  void (*backward_output_planes)(const BackwardArgs&, int64_t begin, int64_t end);
  // Items over (n, c_in): grad_input[n, c_in], gathered from the grad_output
  // planes of its group. Only for convolutions that are not depthwise.
  void (*backward_input_planes)(const BackwardArgs&, int64_t begin, int64_t end);
};

const PlaneKernels& plane_kernels_avx512_bf16();
const PlaneKernels& plane_kernels_avx512();
const PlaneKernels& plane_kernels_avx2();
const PlaneKernels& plane_kernels_generic();

// The best set this CPU supports; MULA_CPU_ISA=avx512_bf16|avx512|avx2|generic overrides
// it (read at every call) to test the other builds on one machine.
const PlaneKernels& select_plane_kernels();

}  // namespace mula::cpu
