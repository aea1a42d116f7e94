// Chooses the per-plane kernels for the CPU the process runs on.
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "plane_kernels.h"

namespace mula::cpu {
namespace {

// What each build's target pragma asks of the CPU. __builtin_cpu_supports
// also checks that the OS saves the wide registers.
bool has_avx512() { return __builtin_cpu_supports("avx512f"); }
bool has_avx512_bf16() {
  return has_avx512() && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512bf16");
}
bool has_avx2() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
}

const PlaneKernels& detect() {
  if (has_avx512_bf16()) return plane_kernels_avx512_bf16();
  if (has_avx512()) return plane_kernels_avx512();
  if (has_avx2()) return plane_kernels_avx2();
  return plane_kernels_generic();
}

}  // namespace

// MULA_CPU_ISA is read at every call (a getenv and a string compare, nothing
// beside a convolution), so tests can switch builds within one process.
const PlaneKernels& select_plane_kernels() {
  static const PlaneKernels& detected = detect();
  const char* requested = std::getenv("MULA_CPU_ISA");
  if (requested == nullptr || *requested == '\0') return detected;
  const std::string isa(requested);
  if (isa == "generic") return plane_kernels_generic();
  if (isa == "avx2" && has_avx2()) return plane_kernels_avx2();
  if (isa == "avx512" && has_avx512()) return plane_kernels_avx512();
  if (isa == "avx512_bf16" && has_avx512_bf16()) return plane_kernels_avx512_bf16();
  throw std::runtime_error("mula_ops: MULA_CPU_ISA=" + isa +
                           " is not one of avx512_bf16, avx512, avx2, generic, or this CPU lacks it");
}

}  // namespace mula::cpu
