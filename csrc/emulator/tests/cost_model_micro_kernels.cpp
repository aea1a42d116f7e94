// Micro-kernels whose GPU cost follows from NVIDIA's documented rules, run
// under the emulator's cost model (../cost_model.h); prints one JSON line per
// kernel with its counts. tests/test_gpu_cost_model.py builds this (with
// -rdynamic, for the kernel names) and checks each count against the rule.
#include <cstdio>
#include <vector>

#include "../../cuda/device_memory.cuh"
#include "../../cuda/warp_reductions.cuh"

using mula::cuda::read;
using mula::cuda::write;

struct alignas(8) Pair {
  float x, y;
};
struct alignas(16) Quad {
  float x, y, z, w;
};

// Global memory, one warp: a[i] with consecutive 4-byte elements (4 sectors
// per request), 8-byte elements (8), every other element (8), every 32nd (32)
// and one element off a 128-byte boundary (5).
__global__ void global_copy_4_bytes(const float* in, float* out) {
  write(out + threadIdx.x, read(in + threadIdx.x));
}
__global__ void global_copy_8_bytes(const double* in, double* out) {
  write(out + threadIdx.x, read(in + threadIdx.x));
}
__global__ void global_read_stride_2(const float* in, float* out) {
  write(out + threadIdx.x, read(in + 2 * threadIdx.x));
}
__global__ void global_read_stride_32(const float* in, float* out) {
  write(out + threadIdx.x, read(in + 32 * threadIdx.x));
}
__global__ void global_read_offset_1(const float* in, float* out) {
  write(out + threadIdx.x, read(in + 1 + threadIdx.x));
}
// Only even lanes active: one request of 16 lanes, every other element.
__global__ void global_read_even_lanes(const float* in, float* out) {
  const bool even = threadIdx.x % 2 == 0;
  write(out + threadIdx.x, mula::cuda::read_if(even, in + threadIdx.x));
}

// Shared memory, one warp, each kernel one load request (after a store
// request that fills the array row by row: conflict-free).
__global__ void shared_row_read(float* out) {
  MULA_DYNAMIC_SHARED(float, s);
  for (int i = 0; i < 32; ++i) write(s + i * 32 + threadIdx.x, float(i));
  __syncwarp();
  write(out + threadIdx.x, read(s + threadIdx.x));
}
__global__ void shared_column_read(float* out) {  // a 32 x 32 array read down a column
  MULA_DYNAMIC_SHARED(float, s);
  for (int i = 0; i < 32; ++i) write(s + i * 32 + threadIdx.x, float(i));
  __syncwarp();
  write(out + threadIdx.x, read(s + threadIdx.x * 32));
}
__global__ void shared_padded_column_read(float* out) {  // the same array with 33 columns
  MULA_DYNAMIC_SHARED(float, s);
  for (int i = 0; i < 32; ++i) write(s + i * 33 + threadIdx.x, float(i));
  __syncwarp();
  write(out + threadIdx.x, read(s + threadIdx.x * 33));
}
__global__ void shared_broadcast_read(float* out) {  // every lane on one word
  MULA_DYNAMIC_SHARED(float, s);
  write(s + threadIdx.x, float(threadIdx.x));
  __syncwarp();
  write(out + threadIdx.x, read(s + 5));
}
__global__ void shared_read_8_bytes(float* out) {
  MULA_DYNAMIC_SHARED(Pair, s);
  write(s + threadIdx.x, Pair{1, 2});
  __syncwarp();
  write(out + threadIdx.x, read(s + threadIdx.x).y);
}
__global__ void shared_read_16_bytes(float* out) {
  MULA_DYNAMIC_SHARED(Quad, s);
  write(s + threadIdx.x, Quad{1, 2, 3, 4});
  __syncwarp();
  write(out + threadIdx.x, read(s + threadIdx.x).w);
}
__global__ void shared_read_stride_2(float* out) {  // a 2-way bank conflict
  MULA_DYNAMIC_SHARED(float, s);
  write(s + threadIdx.x, 0.f);
  write(s + 32 + threadIdx.x, 0.f);
  __syncwarp();
  write(out + threadIdx.x, read(s + 2 * threadIdx.x));
}

// Arithmetic and synchronisation, two warps: 3 FP32 multiply-adds and one
// FP64 add per thread, one warp sum (5 shuffles per warp), one barrier.
__global__ void arithmetic(float* out) {
  float x = 1.f;
  for (int i = 0; i < 3; ++i) x = mula::cuda::multiply_add(x, 2.f, 1.f);
  const double d = mula::cuda::add(double(x), 1.0);
  __syncthreads();
  const float sum = mula::cuda::warp_sum(float(d));
  write(out + threadIdx.x, sum);
}

template <typename Kernel, typename... Args>
void profile(dim3 threads, std::size_t shared_bytes, Kernel kernel, Args... args) {
  mula::emu::CostModel model;
  if (mula::emu::launch(dim3(1), threads, shared_bytes, kernel, args...) != cudaSuccess) {
    std::printf("{\"error\": \"launch failed\"}\n");
    return;
  }
  std::printf("%s\n", mula::emu::to_json(model.launches.at(0)).c_str());
}

int main() {
  // 128-byte aligned, like cudaMalloc's allocations.
  alignas(128) static float in[32 * 33];
  alignas(128) static double in8[32];
  alignas(128) static float out[64];
  alignas(128) static double out8[32];
  profile(dim3(32), 0, global_copy_4_bytes, in, out);
  profile(dim3(32), 0, global_copy_8_bytes, in8, out8);
  profile(dim3(32), 0, global_read_stride_2, in, out);
  profile(dim3(32), 0, global_read_stride_32, in, out);
  profile(dim3(32), 0, global_read_offset_1, in, out);
  profile(dim3(32), 0, global_read_even_lanes, in, out);
  const std::size_t array_bytes = 32 * 33 * sizeof(float);
  profile(dim3(32), array_bytes, shared_row_read, out);
  profile(dim3(32), array_bytes, shared_column_read, out);
  profile(dim3(32), array_bytes, shared_padded_column_read, out);
  profile(dim3(32), array_bytes, shared_broadcast_read, out);
  profile(dim3(32), 32 * sizeof(Pair), shared_read_8_bytes, out);
  profile(dim3(32), 32 * sizeof(Quad), shared_read_16_bytes, out);
  profile(dim3(32), 64 * sizeof(float), shared_read_stride_2, out);
  profile(dim3(64), 0, arithmetic, out);
  return 0;
}
