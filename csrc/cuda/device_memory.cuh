// The kernels' memory accesses and floating-point arithmetic, one function
// each: under nvcc the plain expression, force-inlined;
// under the CUDA emulator each call is also counted by its cost model
// (csrc/emulator/cost_model.h), which needs to see every access with its call
// site (one call site and dynamic instance = one warp-level instruction).
//
// Rules for kernel code, so that the emulator lines lanes up into warp
// requests the way the GPU's SIMT execution does:
// - every global or shared access goes through read/write (read_if/write_if
//   when a lane may sit it out: the predicate is the lane's active mask);
// - a loop whose trip count differs between the lanes of a warp must not
//   contain an access: loop warp-uniformly and predicate the body instead.
#pragma once

#include "device_platform.cuh"

namespace mula::cuda {

#ifdef MULA_CUDA_EMULATION

using emu::Site;

template <typename T>
T read(const T* address, Site site = Site::current()) {
  emu::count_access(address, sizeof(T), false, true, site);
  return *address;
}
// address is only dereferenced when active.
template <typename T>
T read_if(bool active, const T* address, Site site = Site::current()) {
  emu::count_access(address, sizeof(T), false, active, site);
  return active ? *address : T{};
}
template <typename T>
void write(T* address, T value, Site site = Site::current()) {
  emu::count_access(address, sizeof(T), true, true, site);
  *address = value;
}
template <typename T>
void write_if(bool active, T* address, T value, Site site = Site::current()) {
  emu::count_access(address, sizeof(T), true, active, site);
  if (active) *address = value;
}
template <typename T>
T multiply_add(T a, T b, T c) {
  emu::count_arithmetic<T>(true);
  return a * b + c;
}
template <typename T>
T add(T a, T b) {
  emu::count_arithmetic<T>(false);
  return a + b;
}

#else

template <typename T>
__device__ __forceinline__ T read(const T* address) {
  return *address;
}
template <typename T>
__device__ __forceinline__ T read_if(bool active, const T* address) {
  return active ? *address : T{};
}
template <typename T>
__device__ __forceinline__ void write(T* address, T value) {
  *address = value;
}
template <typename T>
__device__ __forceinline__ void write_if(bool active, T* address, T value) {
  if (active) *address = value;
}
template <typename T>
__device__ __forceinline__ T multiply_add(T a, T b, T c) {
  return a * b + c;  // contracted to one FMA (nvcc's default -fmad=true)
}
template <typename T>
__device__ __forceinline__ T add(T a, T b) {
  return a + b;
}

#endif

}  // namespace mula::cuda
