"""The public functional API of the per-sample dynamic convolution."""
from typing import Optional

import torch
from torch import Tensor

from ._arguments import normalize, pad_extra

__all__ = ["dynamic_conv2d", "dynamic_depthwise_conv2d"]


def _check_tensor(value, name):
    if not isinstance(value, Tensor):
        raise TypeError(f"dynamic_conv2d: expected {name} to be a Tensor, got {type(value).__name__}")


def dynamic_conv2d(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None, stride=1,
                   padding=0, dilation=1, groups: int = 1) -> Tensor:
    """A 2-D convolution whose filters differ for every sample.

    Args:
        input: (N, C_in, H, W).
        weight: (N, C_out, C_in / groups, kH, kW): one filter bank per sample.
        bias: None, (C_out,) shared by all samples, or (N, C_out) per sample.
        stride, dilation: an int or a pair.
        padding: an int, a pair, ``'same'`` or ``'valid'``, as in ``F.conv2d``.
        groups: as in ``F.conv2d``; ``groups = C_in = C_out`` is depthwise.

    Returns:
        (N, C_out, H_out, W_out) with F.conv2d's output size, in the input's
        memory format (contiguous, or channels_last for a channels_last input).
        Equal to ``F.conv2d(input[n:n+1], weight[n], ...)`` for every n.
    """
    return call_operator(torch.ops.mula_ops.dynamic_conv2d, input, weight, bias, stride, padding, dilation,
                         groups)


def call_operator(operator, input, weight, bias, stride, padding, dilation, groups) -> Tensor:
    """Checks and normalises F.conv2d-style arguments and calls ``operator``
    (mula_ops' op, or the tests' emulated CUDA op of the same schema)."""
    _check_tensor(input, "input")
    _check_tensor(weight, "weight")
    if bias is not None:
        _check_tensor(bias, "bias")
    if not isinstance(groups, int) or isinstance(groups, bool):
        raise TypeError(f"dynamic_conv2d: expected groups to be an int, got {groups!r}")
    args = normalize(weight, stride, padding, dilation)
    return operator(pad_extra(input, args), weight, bias, list(args.stride), list(args.padding),
                    list(args.dilation), groups)


def dynamic_depthwise_conv2d(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None, stride=1,
                             padding=0, dilation=1) -> Tensor:
    """Per-sample depthwise convolution, MuLA's case: weight (N, C, kH, kW)
    holds one kH x kW filter per sample and channel."""
    _check_tensor(weight, "weight")
    if weight.dim() != 4:
        raise ValueError("dynamic_depthwise_conv2d: expected weight to be 4-D (N, C, kH, kW), "
                         f"got {weight.dim()}-D tensor of shape {tuple(weight.shape)}")
    return dynamic_conv2d(input, weight.unsqueeze(2), bias, stride, padding, dilation,
                          groups=weight.shape[1])
