// Large CPU outputs kept for reuse. glibc maps every block of 32 MiB and
// more afresh and unmaps it when freed (its reuse threshold stops there), so
// each call of an operator whose output is that large pays for the kernel
// zeroing the new pages before a single value is computed: a float64
// output at MuLA's shape at N=4, any dtype at N=16, a third or more of the
// operator's time. The pool keeps such blocks when their tensors are freed
// and hands them to the next output of the same size, as PyTorch's CUDA
// caching allocator does for GPU memory. It holds at most kPoolBlocks
// blocks (the oldest is returned to the system first);
// MULA_CPU_OUTPUT_POOL=0 turns it off. Smaller requests go to PyTorch's CPU
// allocator.
#pragma once

#include <c10/core/Allocator.h>

namespace mula::cpu {

// The allocator of the CPU backend's outputs and input gradients.
c10::Allocator* output_allocator();

}  // namespace mula::cpu
