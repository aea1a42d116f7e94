"""argparse options generated from the config dataclasses: every field of
ModelConfig, TrainConfig and DataConfig is a flag (`--field-name`) with the
field's type and default, so a setting added to a dataclass appears on the
command line without further code."""
import argparse
import dataclasses
import typing
from typing import Dict, Optional, Sequence

# Help, choices and flag names where the field name alone says too little.
HELP = {
    "mutual_adaptation": "the adapters and adaptive convolution (--no-mutual-adaptation: the paper's baseline)",
    "next_stage_input": "feature fed to the next stage: preliminary R (code) or refined R' (paper)",
    "align_corners": "bilinear upsampling with align_corners (code: on)",
    "implementation": "dynamic depthwise convolution: compiled operator or a pure-PyTorch reference",
    "batch_size": "global batch, split over torchrun processes",
    "lr": "initial learning rate (default: the code's 0.0015 for Hourglass, 0.0001 for VGG)",
    "lr_milestones": "fractions of the epochs where the learning rate steps down",
    "lr_factors": "the multiples of lr from each milestone on",
    "amp": "mixed precision (bfloat16 on CPU, float16 on GPU)",
    "workers": "data loading processes",
    "threads": "torch threads per process (0: torch's default; -1: the fastest, measured on the CPU before training)",
    "root": "LIP-format data folder (default: the built-in synthetic people)",
    "scale_range": "training scale augmentation factor range (spec: 0.8 1.5)",
    "heatmap_sigma": "pose target Gaussian sigma in input pixels (default: 7 at 256, scaled with the input)",
    "synthetic_accessories": "probability of each of hat, sunglasses, scarf, gloves on a synthetic person",
}
FLAG_NAMES = {"root": "--data"}




def _argument(field_type, default):
    """argparse keyword arguments for a field's type."""
    origin, params = typing.get_origin(field_type), typing.get_args(field_type)
    if origin is typing.Union and type(None) in params:  # Optional[X]
        (inner,) = [p for p in params if p is not type(None)]
        return dict(type=inner, default=default)
    if origin is tuple:
        return dict(type=params[0], nargs="+" if params[-1] is Ellipsis else len(params), default=default)
    if field_type is bool:
        return dict(action=argparse.BooleanOptionalAction, default=default)
    return dict(type=field_type, default=default)


def add_config_options(parser, config_class, title: str, choices: Optional[Dict[str, Sequence]] = None,
                       skip: Sequence[str] = (), defaults: Optional[Dict] = None) -> None:
    """One flag per field of `config_class`, in an argument group; `defaults`
    overrides a field's default on this command line (None: resolved later)."""
    group = parser.add_argument_group(title)
    hints = typing.get_type_hints(config_class)
    for field in dataclasses.fields(config_class):
        if field.name in skip:
            continue
        default = (defaults or {}).get(field.name, field.default)
        kwargs = _argument(hints[field.name], default)
        if field.name in (choices or {}):
            kwargs["choices"] = choices[field.name]
        flag = FLAG_NAMES.get(field.name, "--" + field.name.replace("_", "-"))
        group.add_argument(flag, dest=field.name, help=HELP.get(field.name), **kwargs)


def config_from_args(config_class, args, **overrides):
    """The dataclass from the parsed flags that add_config_options added."""
    values = {field.name: getattr(args, field.name) for field in dataclasses.fields(config_class)
              if hasattr(args, field.name)}
    values = {name: tuple(value) if isinstance(value, list) else value for name, value in values.items()}
    return config_class(**dict(values, **overrides))
