"""Residual bottleneck blocks of the Hourglass encoder (Newell et al.)."""
from torch import Tensor, nn


def bn_relu_conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True),
                         nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False))


class PreActBottleneck(nn.Module):
    """BN-ReLU-1x1 (C/2), BN-ReLU-3x3 (C/2), BN-ReLU-1x1 (C), plus the skip.

    The skip has a BN-ReLU-1x1 projection only when the channel count changes
    (the authors' code always builds it and leaves it unused otherwise)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        mid = out_channels // 2
        self.residual = nn.Sequential(bn_relu_conv(in_channels, mid, 1), bn_relu_conv(mid, mid, 3),
                                      bn_relu_conv(mid, out_channels, 1))
        self.projection = bn_relu_conv(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: Tensor) -> Tensor:
        skip = x if self.projection is None else self.projection(x)
        return self.residual(x) + skip


class PostActBottleneck(nn.Module):
    """1x1-BN-ReLU, 3x3-BN-ReLU, 1x1-BN, plus the (projected) skip, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        mid = out_channels // 2
        self.residual = nn.Sequential(
            nn.Conv2d(in_channels, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
        self.projection = None
        if in_channels != out_channels:
            self.projection = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                            nn.BatchNorm2d(out_channels))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        skip = x if self.projection is None else self.projection(x)
        return self.relu(self.residual(x) + skip)
