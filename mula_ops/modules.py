"""nn.Module front end of the dynamic convolution."""
from typing import Optional

from torch import Tensor, nn

from . import reference
from ._arguments import pair
from .functional import dynamic_conv2d

# The names DynamicConv2d, MuLA and the benchmarks accept: the compiled operator first.
IMPLEMENTATIONS = ("mula_ops", *reference.IMPLEMENTATIONS)


class DynamicConv2d(nn.Module):
    """Holds the hyper-parameters of a per-sample convolution; the filters are
    an input of ``forward``, shape (N, out_channels, in_channels / groups, kH, kW).

    ``implementation`` selects the compiled operator (``'mula_ops'``) or one of
    the pure-PyTorch references (``'grouped'``, ``'unfold'``); all three compute
    the same function.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, implementation: str = "mula_ops"):
        super().__init__()
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"DynamicConv2d: expected implementation to be one of {IMPLEMENTATIONS}, "
                             f"got {implementation!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"DynamicConv2d: expected in_channels ({in_channels}) and out_channels "
                             f"({out_channels}) to be divisible by groups ({groups})")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride, self.dilation = pair(stride, "stride"), pair(dilation, "dilation")
        self.padding = padding if isinstance(padding, str) else pair(padding, "padding")
        self.implementation = implementation
        self._conv = dynamic_conv2d if implementation == "mula_ops" else reference.IMPLEMENTATIONS[implementation]

    def weight_shape(self, batch: int):
        kh, kw = self.kernel_size
        return (batch, self.out_channels, self.in_channels // self.groups, kh, kw)

    def forward(self, input: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
        if weight.dim() == 4 and self.in_channels == self.out_channels == self.groups:
            weight = weight.unsqueeze(2)  # depthwise filters given as (N, C, kH, kW)
        expected = self.weight_shape(input.shape[0])
        if tuple(weight.shape) != expected:
            raise ValueError(f"DynamicConv2d: expected weight of shape {expected}, got {tuple(weight.shape)}")
        return self._conv(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        if self.stride != (1, 1):
            text += f", stride={self.stride}"
        if self.padding not in ((0, 0), "valid"):
            text += f", padding={self.padding!r}" if isinstance(self.padding, str) else f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.implementation != "mula_ops":
            text += f", implementation={self.implementation!r}"
        return text
