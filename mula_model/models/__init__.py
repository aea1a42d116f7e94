"""MuLA models: Hourglass-based (default) and VGG-based."""
from torch import nn

from ..config import ModelConfig
from .mula import MuLA, MuLAOutput
from .vgg import VGGMuLA


def build_model(config: ModelConfig) -> nn.Module:
    return MuLA(config) if config.backbone == "hourglass" else VGGMuLA(config)


__all__ = ["build_model", "MuLA", "VGGMuLA", "MuLAOutput"]
