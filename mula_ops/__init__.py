"""mula_ops: per-sample dynamic convolution for PyTorch (CPU and CUDA kernels)."""
from ._library import load_library

_C = load_library()

from . import _registrations  # noqa: E402,F401  (fake kernels and autograd)
from . import reference  # noqa: E402
from .functional import dynamic_conv2d, dynamic_depthwise_conv2d  # noqa: E402
from .modules import DynamicConv2d  # noqa: E402

__all__ = ["dynamic_conv2d", "dynamic_depthwise_conv2d", "DynamicConv2d", "reference"]
__version__ = "0.1.0"
