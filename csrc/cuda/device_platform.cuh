// What device code sees: CUDA itself under nvcc, the CUDA emulator otherwise.
// Kernels declare shared memory only through MULA_DYNAMIC_SHARED, the one form
// both provide.
#pragma once

#ifdef MULA_CUDA_EMULATION
#include "../emulator/cuda_emulator.h"
#else
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#define MULA_DYNAMIC_SHARED(type, name)                            \
  extern __shared__ __align__(16) unsigned char mula_shared_raw[]; \
  type* name = reinterpret_cast<type*>(mula_shared_raw)
#endif
