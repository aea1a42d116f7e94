// The CUDA backend's functions for its entry of the backend table
// (../dynamic_conv_problem.h): the limits only the CUDA kernels have, and the
// launches. Torch-free; used by the CUDA registration (dynamic_conv_cuda.cpp)
// and by the emulated build the tests use (csrc/emulator/emulated_ops.cpp),
// which differ only in the stream they pass and in how the launchers are
// compiled.
#pragma once

#include <climits>
#include <stdexcept>
#include <string>

#include "dynamic_conv_launch.h"

namespace mula::cuda {

// The kernels index within a plane in int, and stage tiles in 48 KiB of
// shared memory; returns the backward's workspace bytes.
inline std::size_t prepare(const ConvShape& s, DType dtype) {
  using std::to_string;
  if (s.in_height * s.in_width > INT_MAX || s.out_height * s.out_width > INT_MAX) {
    throw std::runtime_error(
        "dynamic_conv2d (CUDA): expected input and output planes of at most 2^31 - 1 elements, "
        "got " +
        to_string(s.in_height) + " x " + to_string(s.in_width) + " -> " + to_string(s.out_height) +
        " x " + to_string(s.out_width));
  }
  if (s.kernel_h * s.kernel_w > INT_MAX || s.pad_h > INT_MAX / 4 || s.pad_w > INT_MAX / 4 ||
      s.stride_h > INT_MAX || s.stride_w > INT_MAX || s.dilation_h * s.kernel_h > INT_MAX / 4 ||
      s.dilation_w * s.kernel_w > INT_MAX / 4) {
    throw std::runtime_error(
        "dynamic_conv2d (CUDA): kernel size, stride, padding or dilation too large");
  }
  if (!fits_shared_memory(s, dtype)) {
    throw std::runtime_error(
        "dynamic_conv2d (CUDA): the dilated kernel (" +
        to_string(s.dilation_h * (s.kernel_h - 1) + 1) + " x " +
        to_string(s.dilation_w * (s.kernel_w - 1) + 1) +
        ") is too large for the kernels' shared-memory tile (48 KiB per block)");
  }
  return backward_workspace_bytes(s, dtype);
}

inline void check_launch(cudaError_t status, const char* pass) {
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string("dynamic_conv2d: CUDA ") + pass +
                             " kernel launch failed: " + cudaGetErrorString(status));
  }
}

inline void forward(const ForwardArgs& args, void* stream) {
  check_launch(launch_forward(args, static_cast<cudaStream_t>(stream)), "forward");
}

inline void backward(const BackwardArgs& args, void* workspace, void* stream) {
  check_launch(launch_backward(args, workspace, static_cast<cudaStream_t>(stream)), "backward");
}

}  // namespace mula::cuda
