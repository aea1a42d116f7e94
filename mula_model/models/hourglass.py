"""Hourglass encoder pieces: the stem (stride 4) and one hourglass block."""
import torch.nn.functional as F
from torch import Tensor, nn

from .residual import PostActBottleneck, PreActBottleneck


class Stem(nn.Module):
    """Image (3, S, S) -> features (C, S/4, S/4). With C = 256 the widths are
    the paper's 64 and 128; smaller C scales them down in proportion."""

    def __init__(self, features: int):
        super().__init__()
        quarter, half = features // 4, features // 2
        self.conv = nn.Sequential(nn.Conv2d(3, quarter, 7, stride=2, padding=3), nn.BatchNorm2d(quarter),
                                  nn.ReLU(inplace=True), PostActBottleneck(quarter, half), nn.MaxPool2d(2))
        # Bottleneck without pre-activation and with an identity skip.
        self.bottleneck = nn.Sequential(
            nn.Conv2d(half, quarter, 1, bias=False), nn.BatchNorm2d(quarter), nn.ReLU(inplace=True),
            nn.Conv2d(quarter, quarter, 3, padding=1, bias=False), nn.BatchNorm2d(quarter), nn.ReLU(inplace=True),
            nn.Conv2d(quarter, half, 1, bias=False))
        self.widen = PreActBottleneck(half, features)

    def forward(self, image: Tensor) -> Tensor:
        x = self.conv(image)
        return self.widen(x + self.bottleneck(x))


class HourglassLevel(nn.Module):
    """One level of the hourglass: residual, 2x max-pool, the inner level (or
    the bottom residual), 2x bilinear upsampling, add the skip, residual."""

    def __init__(self, features: int, depth: int, align_corners: bool):
        super().__init__()
        self.down = PreActBottleneck(features, features)
        self.inner = (HourglassLevel(features, depth - 1, align_corners) if depth > 1
                      else PreActBottleneck(features, features))
        self.up = PreActBottleneck(features, features)
        self.align_corners = align_corners

    def forward(self, x: Tensor) -> Tensor:
        skip = self.down(x)
        inner = self.inner(F.max_pool2d(skip, 2))
        upsampled = F.interpolate(inner, size=skip.shape[-2:], mode="bilinear", align_corners=self.align_corners)
        return self.up(skip + upsampled)


class Hourglass(nn.Module):
    """Hourglass block (four downsamplings by default, nine residuals), then BN + ReLU."""

    def __init__(self, features: int, depth: int = 4, align_corners: bool = True):
        super().__init__()
        self.levels = HourglassLevel(features, depth, align_corners)
        self.out = nn.Sequential(nn.BatchNorm2d(features), nn.ReLU(inplace=True))

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.levels(x))
