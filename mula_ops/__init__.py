"""mula_ops: per-sample dynamic convolution for PyTorch (CPU and CUDA kernels)."""
# ruff: noqa: E402  (the compiled library loads first: it defines the operators the rest registers)
from ._library import load_library

_C = load_library()

from . import _registrations, reference  # noqa: F401  (_registrations: fake kernels and autograd)
from .functional import dynamic_conv2d, dynamic_depthwise_conv2d
from .modules import IMPLEMENTATIONS, DynamicConv2d

__all__ = ["dynamic_conv2d", "dynamic_depthwise_conv2d", "DynamicConv2d", "IMPLEMENTATIONS", "reference"]
__version__ = "0.1.0"
