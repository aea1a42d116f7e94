// Transparent huge pages for large fresh outputs: the output pool's first
// blocks (output_pool.h), or every block with the pool off, and a heap that
// glibc has handed back and grows again. The kernels' first touch faults
// fresh memory in one 4 KiB page at a time: 17 ms for 32 MiB on a 2-core KVM
// guest, longer than the convolution. Asking for huge pages on the 2 MiB-
// aligned interior of such a block takes 4.8 ms instead. A block whose pages are
// already resident (memory the heap reuses) is left alone, as is any
// system whose transparent huge pages are `never` (nothing to ask) or
// `always` (nothing to add). MULA_CPU_HUGE_PAGES=0 turns the advice off.
#pragma once

#include <cstddef>

namespace mula::cpu {

// Advice only: whatever the system answers, the memory and its contents
// are the same.
void advise_huge_pages(void* data, std::size_t bytes);

}  // namespace mula::cpu
