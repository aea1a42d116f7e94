"""Mutual adaptation: the parameter adapter that predicts per-sample filters
from the other task's features, and the factorized adaptive convolution that
applies them (after Bertinetto et al., "Learning feed-forward one-shot learners")."""
from torch import Tensor, nn

import mula_ops
from mula_ops._arguments import output_size


def adapter_output_size(feature_size: int) -> int:
    """Spatial size of the adapter output = the dynamic kernel size
    (64 -> 7 for the Hourglass model, 32 -> 3 for VGG)."""
    size = output_size(feature_size, kernel=3, stride=2, padding=0, dilation=1)  # the first conv
    return size // 2 // 2  # two 2x max-pools; the padded 3x3 convs keep the size


def dynamic_kernel_size(feature_size: int) -> int:
    kernel = adapter_output_size(feature_size)
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"mutual adaptation: a {feature_size}x{feature_size} feature map gives a "
                         f"{kernel}x{kernel} dynamic kernel; expected an odd size >= 1 (use an input size "
                         f"such as 256, 128 or 64 for the Hourglass model)")
    return kernel


class ParameterAdapter(nn.Sequential):
    """Features (N, C, H, W) -> one k x k filter per sample and channel (N, C, k, k).
    Linear (no activations), as in the paper."""

    def __init__(self, channels: int):
        super().__init__(nn.Conv2d(channels, channels, 3, stride=2), nn.MaxPool2d(2),
                         nn.Conv2d(channels, channels, 3, padding=1), nn.MaxPool2d(2),
                         nn.Conv2d(channels, channels, 3, padding=1))


class FactorizedAdaptiveConv(nn.Module):
    """R_res = ReLU(BN(V(DynDW(U(R), w)))): 1x1 U, per-sample depthwise k x k
    with the adapter's filters w, 1x1 V (BN only in the Hourglass model)."""

    def __init__(self, channels: int, kernel_size: int, batch_norm: bool, implementation: str):
        super().__init__()
        self.u = nn.Conv2d(channels, channels, 1)
        self.dynamic = mula_ops.DynamicConv2d(channels, channels, kernel_size, padding=kernel_size // 2,
                                              groups=channels, implementation=implementation)
        self.v = nn.Conv2d(channels, channels, 1)
        self.norm = nn.BatchNorm2d(channels) if batch_norm else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, features: Tensor, filters: Tensor) -> Tensor:
        return self.relu(self.norm(self.v(self.dynamic(self.u(features), filters))))
