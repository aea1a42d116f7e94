// Defines the operators. Implementations register themselves per device
// (cpu/, cuda/) and for autocast (autocast.cpp); fake kernels and autograd
// are registered from Python (mula_ops/_registrations.py).
#include <torch/library.h>

#include "dynamic_conv_schema.h"

TORCH_LIBRARY(mula_ops, m) {
  m.def(mula::kForwardSchema);
  m.def(mula::kBackwardSchema);
}
