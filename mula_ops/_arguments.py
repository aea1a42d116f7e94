"""Normalisation of the F.conv2d-style hyper-parameters, shared by the operator
front end and the pure-PyTorch references so that all of them read
``stride``, ``padding`` and ``dilation`` the same way."""
from typing import NamedTuple, Tuple, Union

import torch.nn.functional as F
from torch import Tensor

IntOrPair = Union[int, Tuple[int, int]]


class ConvArgs(NamedTuple):
    stride: Tuple[int, int]
    padding: Tuple[int, int]
    dilation: Tuple[int, int]
    # 'same' with an even dilated kernel pads one more row/column at the
    # bottom/right (as F.conv2d does); that extra is applied to the input.
    extra_padding: Tuple[int, int]


def pair(value: IntOrPair, name: str) -> Tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        return (int(value[0]), int(value[1]))
    raise TypeError(f"dynamic_conv2d: expected {name} to be an int or a pair of ints, got {value!r}")


def normalize(weight: Tensor, stride: IntOrPair, padding, dilation: IntOrPair) -> ConvArgs:
    stride_, dilation_ = pair(stride, "stride"), pair(dilation, "dilation")
    if isinstance(padding, str):
        if padding == "valid":
            return ConvArgs(stride_, (0, 0), dilation_, (0, 0))
        if padding != "same":
            raise ValueError("dynamic_conv2d: expected padding to be an int, a pair, 'same' or 'valid', "
                             f"got {padding!r}")
        if stride_ != (1, 1):
            raise ValueError(f"dynamic_conv2d: padding='same' expects stride 1, got stride={stride_}")
        if weight.dim() < 2:
            raise ValueError(f"dynamic_conv2d: expected weight to be 5-D, got {weight.dim()}-D")
        totals = [d * (k - 1) for d, k in zip(dilation_, weight.shape[-2:])]
        before = tuple(t // 2 for t in totals)
        extra = tuple(t - 2 * b for t, b in zip(totals, before))
        return ConvArgs(stride_, before, dilation_, extra)
    return ConvArgs(stride_, pair(padding, "padding"), dilation_, (0, 0))


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """F.conv2d's output size along one axis (the Python twin of csrc's)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def pad_extra(input: Tensor, args: ConvArgs) -> Tensor:
    extra_h, extra_w = args.extra_padding
    if extra_h or extra_w:
        return F.pad(input, (0, extra_w, 0, extra_h))
    return input
