"""Automatic mixed precision: bfloat16 autocast on the CPU, float16 on GPUs."""
import contextlib

import torch


def autocast(device: torch.device, enabled: bool):
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)
