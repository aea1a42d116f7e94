"""Pure-PyTorch per-sample convolutions: the baselines of the benchmarks and
the oracles of the tests. Same signature as :func:`mula_ops.dynamic_conv2d`.

- :func:`unfold`: im2col then a batched matrix product. Simple, but it
  materialises kH*kW copies of the input (49 for MuLA's 7x7).
- :func:`grouped`: the trick of the MuLA authors' code: fold the batch into
  the channels and run one grouped ``F.conv2d`` with ``groups = N * groups``.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ._arguments import normalize, output_size, pad_extra

__all__ = ["unfold", "grouped", "IMPLEMENTATIONS"]


def _add_bias(out: Tensor, bias: Optional[Tensor]) -> Tensor:
    if bias is None:
        return out
    if bias.dim() == 1:
        return out + bias.view(1, -1, 1, 1)
    return out + bias.view(bias.shape[0], bias.shape[1], 1, 1)


def unfold(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None, stride=1, padding=0,
           dilation=1, groups: int = 1) -> Tensor:
    args = normalize(weight, stride, padding, dilation)
    input = pad_extra(input, args)
    n, c_in, h, w = input.shape
    _, c_out, c_per_group, kh, kw = weight.shape
    out_h, out_w = (output_size(*sizes) for sizes in zip((h, w), (kh, kw), args.stride, args.padding, args.dilation))
    # (N, C_in * kH * kW, L): every input pixel copied kH * kW times.
    columns = F.unfold(input, (kh, kw), dilation=args.dilation, padding=args.padding, stride=args.stride)
    columns = columns.view(n, groups, c_per_group * kh * kw, out_h * out_w)
    filters = weight.reshape(n, groups, c_out // groups, c_per_group * kh * kw)
    out = torch.matmul(filters, columns).view(n, c_out, out_h, out_w)
    return _add_bias(out, bias)


def grouped(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None, stride=1, padding=0,
            dilation=1, groups: int = 1) -> Tensor:
    args = normalize(weight, stride, padding, dilation)
    input = pad_extra(input, args)
    n, c_in, h, w = input.shape
    _, c_out, c_per_group, kh, kw = weight.shape
    if n == 0:  # F.conv2d rejects groups = 0
        return unfold(input, weight, bias, args.stride, args.padding, args.dilation, groups)
    flat_bias = None
    if bias is not None:
        flat_bias = bias.reshape(-1) if bias.dim() == 2 else bias.repeat(n)
    out = F.conv2d(input.reshape(1, n * c_in, h, w), weight.reshape(n * c_out, c_per_group, kh, kw),
                   flat_bias, args.stride, args.padding, args.dilation, n * groups)
    return out.view(n, c_out, out.shape[-2], out.shape[-1])


IMPLEMENTATIONS = {"grouped": grouped, "unfold": unfold}
