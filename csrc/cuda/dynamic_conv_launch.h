// The plain interface between the torch glue (g++) and the kernels (nvcc, or
// the host compiler with the CUDA emulator): sizes in a POD struct, raw
// pointers, a stream. No torch types cross this boundary.
#pragma once

#include <cstddef>
#include <cstdint>

#ifdef MULA_CUDA_EMULATION
#include "../emulator/cuda_runtime_emulated.h"
#else
#include <cuda_runtime_api.h>
#endif

namespace mula::cuda {

enum class ScalarType { kFloat, kDouble, kHalf, kBFloat16 };

// All tensors are contiguous: input (N, C_in, H, W), weight
// (N, C_out, C_in / groups, kH, kW), output (N, C_out, H_out, W_out).
// Sizes within one plane fit in int (checked by the glue); offsets across
// planes are computed in int64_t.
struct ConvShape {
  std::int64_t batch, in_channels, out_channels, groups;
  int in_height, in_width, out_height, out_width;
  int kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
};

// False when the dilated kernel is too large for the shared-memory tile of a
// single output even at the smallest tile.
bool fits_shared_memory(const ConvShape& shape, ScalarType type);

// Scratch the backward launch needs for the weight-gradient partial sums (0
// when every input plane fits one block).
std::size_t backward_workspace_bytes(const ConvShape& shape, ScalarType type);

// bias: nullptr, (C_out,) or, when bias_per_sample, (N, C_out).
cudaError_t launch_forward(const ConvShape& shape, ScalarType type, const void* input,
                           const void* weight, const void* bias, bool bias_per_sample,
                           void* output, cudaStream_t stream);

// The fused backward: any of grad_input (like input), grad_weight (like
// weight) and grad_bias (N, C_out) may be nullptr when not wanted; workspace
// holds backward_workspace_bytes(shape, type) bytes.
cudaError_t launch_backward(const ConvShape& shape, ScalarType type, const void* grad_output,
                            const void* input, const void* weight, void* grad_input,
                            void* grad_weight, void* grad_bias, void* workspace,
                            cudaStream_t stream);

}  // namespace mula::cuda
