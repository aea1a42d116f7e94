// The same kernels and launch code as csrc/cuda/dynamic_conv_kernels.cu,
// compiled by the host compiler against the CUDA emulator (build with
// -DMULA_CUDA_EMULATION).
#include "../cuda/dynamic_conv_launchers.cuh"
