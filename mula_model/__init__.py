"""MuLA (Nie, Feng, Yan, ECCV 2018) for joint human parsing and pose
estimation, built on the mula_ops per-sample dynamic convolution."""
from .config import DataConfig, ModelConfig, TrainConfig

_MODELS = ("build_model", "MuLA", "VGGMuLA", "MuLAOutput")
__all__ = ["ModelConfig", "TrainConfig", "DataConfig", *_MODELS]


def __getattr__(name):
    # The models (and so torch) load on first use: the command line sets up
    # OpenMP before torch is imported (see cli.py).
    if name in _MODELS:
        from . import models
        return getattr(models, name)
    raise AttributeError(f"module 'mula_model' has no attribute {name!r}")
