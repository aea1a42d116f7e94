// The CUDA kernels of the dynamic convolution, compiled by nvcc without torch
// headers; the torch glue is dynamic_conv_cuda.cpp.
#include "dynamic_conv_launchers.cuh"
