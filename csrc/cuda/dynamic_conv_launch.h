// The plain interface between the CUDA backend (g++) and the kernels (nvcc,
// or the host compiler with the CUDA emulator): the operator's argument
// structs, a stream. No torch types cross this boundary.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../dynamic_conv_problem.h"

#ifdef MULA_CUDA_EMULATION
#include "../emulator/cuda_runtime_emulated.h"
#else
#include <cuda_runtime_api.h>
#endif

namespace mula::cuda {

// Every launch reads the operator's plain data (../dynamic_conv_problem.h):
// contiguous tensors, sizes within one plane that fit in int (checked by the
// CUDA backend's preparation), offsets across planes in int64_t.

// False when the dilated kernel is too large for the shared-memory tile of a
// single output even at the smallest tile.
bool fits_shared_memory(const ConvShape& shape, DType type);

// Scratch the backward launch needs for the weight-gradient partial sums (0
// when every input plane fits one block).
std::size_t backward_workspace_bytes(const ConvShape& shape, DType type);

cudaError_t launch_forward(const ForwardArgs& args, cudaStream_t stream);

// The fused backward: any of args' gradients may be null when not wanted;
// workspace holds backward_workspace_bytes(shape, dtype) bytes.
cudaError_t launch_backward(const BackwardArgs& args, void* workspace, cudaStream_t stream);

}  // namespace mula::cuda
