"""Checkpoints: written atomically (temp file + os.replace), checked against
the configuration they are loaded into."""
import io
from pathlib import Path
from typing import Optional

import torch

from .config import ModelConfig, TrainConfig, from_dict
from .data import atomic_write

FORMAT_VERSION = 1


def atomic_save(obj, path) -> None:
    """torch.save through a temp file and os.replace: a crash leaves either the
    old checkpoint or the new one, never a torn file."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, buffer.getvalue())


def save(path, model, model_config: ModelConfig, train_config: Optional[TrainConfig] = None,
         optimizer=None, scaler=None, epoch: int = 0, best: Optional[dict] = None) -> None:
    """epoch = the number of completed epochs."""
    atomic_save({
        "format": FORMAT_VERSION,
        "model_config": model_config.architecture(),
        "train_config": None if train_config is None else vars(train_config).copy(),
        "model": model.state_dict(),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "scaler": None if scaler is None else scaler.state_dict(),
        "epoch": epoch,
        "best": best or {},
    }, path)


def load(path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: expected a checkpoint file at {path}, found none")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise ValueError(f"checkpoint: {path} is not a readable mula_model checkpoint ({error})") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise ValueError(f"checkpoint: {path} is not a mula_model checkpoint of format {FORMAT_VERSION}")
    return state


def model_config_of(state: dict, implementation: str = "mula_ops") -> ModelConfig:
    return from_dict(ModelConfig, dict(state["model_config"], implementation=implementation))


def check_compatible(state: dict, model_config: ModelConfig, path) -> None:
    """Raises a clear error when the checkpoint was trained with another model configuration."""
    saved, wanted = state["model_config"], model_config.architecture()
    differences = [f"{key}: checkpoint {saved.get(key)!r}, requested {wanted.get(key)!r}"
                   for key in sorted(set(saved) | set(wanted)) if saved.get(key) != wanted.get(key)]
    if differences:
        raise ValueError(f"checkpoint: {path} was trained with another model configuration ("
                         + "; ".join(differences) + ")")
