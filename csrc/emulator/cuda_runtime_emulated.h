// The host-side CUDA runtime types the emulated launchers use (the part of
// cuda_runtime_api.h that host glue code needs), without any device built-ins,
// so torch glue code can include it safely.
#pragma once

struct dim3 {
  unsigned int x = 1, y = 1, z = 1;
  constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1)
      : x(x_), y(y_), z(z_) {}
};

using cudaStream_t = struct mula_emulated_stream*;
enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidConfiguration = 9 };
inline const char* cudaGetErrorString(cudaError_t error) {
  return error == cudaSuccess ? "no error" : "invalid configuration argument";
}
