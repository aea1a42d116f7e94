"""MuLA (Nie, Feng, Yan, ECCV 2018) for joint human parsing and pose
estimation, built on the mula_ops per-sample dynamic convolution."""
from .config import DataConfig, ModelConfig, TrainConfig
from .models import MuLA, MuLAOutput, VGGMuLA, build_model

__all__ = ["ModelConfig", "TrainConfig", "DataConfig", "build_model", "MuLA", "VGGMuLA", "MuLAOutput"]
