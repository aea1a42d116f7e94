"""The shared case matrix of the operator tests (CPU kernels, CUDA kernels and
the emulated CUDA kernels), the inputs they use, and an independent oracle."""
import itertools
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ConvCase:
    batch: int
    in_channels: int
    out_channels: int
    height: int
    width: int
    kernel: Tuple[int, int]
    stride: Tuple[int, int] = (1, 1)
    padding: Union[Tuple[int, int], str] = (0, 0)
    dilation: Tuple[int, int] = (1, 1)
    groups: int = 1
    bias: Optional[str] = None  # None, 'shared' (C_out,) or 'per_sample' (N, C_out)

    @property
    def id(self):
        pad = self.padding if isinstance(self.padding, str) else "p{}x{}".format(*self.padding)
        return (f"n{self.batch}-c{self.in_channels}to{self.out_channels}-{self.height}x{self.width}"
                f"-k{self.kernel[0]}x{self.kernel[1]}-s{self.stride[0]}x{self.stride[1]}-{pad}"
                f"-d{self.dilation[0]}x{self.dilation[1]}-g{self.groups}-bias_{self.bias}")

    @property
    def kwargs(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)


def _groups_variants():
    # (C_in, C_out, groups): dense, two groups with more outputs than inputs, depthwise.
    return [(3, 4, 1), (4, 6, 2), (5, 5, 5)]


def _matrix():
    cases = []
    kernels = [(1, 1), (3, 3), (5, 5), (7, 7), (3, 5)]
    biases = [None, "shared", "per_sample"]
    batches = [1, 3]
    combos = itertools.product(kernels, _groups_variants(), [1, 2], [1, 2])
    for i, (kernel, (c_in, c_out, groups), stride, dilation) in enumerate(combos):
        # Padding cycles through 0 .. k so every amount meets every other axis somewhere.
        pad = (i % (kernel[0] + 1), (i // 2) % (kernel[1] + 1))
        cases.append(ConvCase(batches[i % 2], c_in, c_out, 15, 17, kernel, (stride, stride), pad,
                              (dilation, dilation), groups, biases[i % 3]))
    # Every padding from 0 up to k for MuLA's 7x7 and VGG's 3x3 depthwise filters.
    for k in (3, 7):
        for pad in range(k + 1):
            cases.append(ConvCase(2, 4, 4, 9, 11, (k, k), padding=(pad, pad), groups=4, bias=biases[pad % 3]))
    # 'same', including even and non-square dilated kernels (asymmetric padding).
    for kernel, dilation in itertools.product([(3, 3), (7, 7), (2, 3), (3, 5)], [1, 2]):
        cases.append(ConvCase(2, 4, 4, 9, 13, kernel, padding="same", dilation=(dilation, dilation), groups=4))
        cases.append(ConvCase(1, 4, 2, 9, 13, kernel, padding="same", dilation=(dilation, dilation), groups=2,
                              bias="shared"))
    # An empty batch, with every kind of bias.
    for bias in biases:
        cases.append(ConvCase(0, 4, 4, 9, 9, (3, 3), padding=(1, 1), groups=4, bias=bias))
        cases.append(ConvCase(0, 3, 4, 9, 9, (3, 3), stride=(2, 2), bias=bias))
    return cases + WIDE_GROUPS_CASES


# Wide groups: a thread's chunk of output planes spans many planes of one
# group, so the kernels reuse a group's staged planes across them.
WIDE_GROUPS_CASES = [
    ConvCase(2, 6, 48, 11, 13, (3, 3), padding=(1, 1), groups=3, bias="per_sample"),
    ConvCase(2, 8, 32, 12, 10, (3, 3), stride=(2, 2), padding=(1, 1), groups=2),
]
CASES = _matrix()

# Representative small cases, named for what they exercise, where a test is too
# slow for the whole matrix (gradcheck, gradgradcheck, every dtype).
NAMED_CASES = {
    "depthwise_3x3": ConvCase(2, 3, 3, 7, 6, (3, 3), padding=(1, 1), groups=3, bias="per_sample"),
    "groups2_strided_dilated": ConvCase(2, 4, 6, 6, 7, (3, 2), stride=(2, 1), padding=(1, 0),
                                        dilation=(1, 2), groups=2, bias="shared"),
    "dense_strided_dilated": ConvCase(1, 2, 3, 5, 5, (3, 3), stride=(2, 2), dilation=(2, 2), padding=(2, 1)),
    "depthwise_7x7": ConvCase(2, 2, 2, 8, 8, (7, 7), padding=(3, 3), groups=2),
    "dense_1x1_strided_dilated": ConvCase(3, 3, 4, 15, 17, (1, 1), stride=(2, 2), padding=(1, 1),
                                          dilation=(2, 2)),
    "depthwise_1x1_strided": ConvCase(1, 5, 5, 15, 17, (1, 1), stride=(2, 2), padding=(0, 1), groups=5,
                                      bias="shared"),
    "groups2_3x3_dilated": ConvCase(3, 4, 6, 15, 17, (3, 3), padding=(1, 0), dilation=(2, 2), groups=2,
                                    bias="per_sample"),
    "depthwise_3x3_asymmetric_padding": ConvCase(1, 5, 5, 15, 17, (3, 3), padding=(0, 2), groups=5,
                                                 bias="per_sample"),
    "dense_5x5_strided_dilated": ConvCase(3, 3, 4, 15, 17, (5, 5), stride=(2, 2), padding=(3, 1),
                                          dilation=(2, 2)),
    "groups2_5x5_strided": ConvCase(1, 4, 6, 15, 17, (5, 5), stride=(2, 2), padding=(0, 3), groups=2),
    "depthwise_7x7_dilated": ConvCase(3, 5, 5, 15, 17, (7, 7), padding=(5, 6), dilation=(2, 2), groups=5),
    "depthwise_3x5_strided": ConvCase(1, 5, 5, 15, 17, (3, 5), stride=(2, 2), padding=(2, 5), groups=5,
                                      bias="shared"),
    # 3x3 stride 1 over enough planes per group: the CPU's Winograd tiles.
    "dense_3x3_winograd": ConvCase(2, 24, 32, 13, 21, (3, 3), padding=(1, 1), bias="per_sample"),
    "groups2_3x3_winograd": ConvCase(1, 48, 64, 9, 40, (3, 3), padding=(0, 2), groups=2, bias="shared"),
}


def make_inputs(case: ConvCase, dtype=torch.float64, device="cpu", seed=0, requires_grad=False):
    """(input, weight, bias) for a case, uniform in [-1, 1)."""
    generator = torch.Generator().manual_seed(seed)

    def uniform(*shape):
        t = torch.rand(*shape, generator=generator, dtype=torch.float64) * 2 - 1
        return t.to(dtype=dtype, device=device).requires_grad_(requires_grad)

    x = uniform(case.batch, case.in_channels, case.height, case.width)
    w = uniform(case.batch, case.out_channels, case.in_channels // case.groups, *case.kernel)
    b = None
    if case.bias == "shared":
        b = uniform(case.out_channels)
    elif case.bias == "per_sample":
        b = uniform(case.batch, case.out_channels)
    return x, w, b


def per_sample_conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """The independent oracle: PyTorch's own F.conv2d, one sample at a time."""
    outputs = []
    for n in range(input.shape[0]):
        b = None if bias is None else (bias if bias.dim() == 1 else bias[n])
        outputs.append(F.conv2d(input[n:n + 1], weight[n], b, stride, padding, dilation, groups))
    if outputs:
        return torch.cat(outputs)
    # An empty batch: F.conv2d on a zero sample gives the output size; the
    # zero-weighted sums keep the (empty) result connected to every input.
    probe = F.conv2d(input.new_zeros(1, *input.shape[1:]), weight.new_zeros(weight.shape[1:]), None,
                     stride, padding, dilation, groups)
    connected = input.sum() + weight.sum() + (0 if bias is None else bias.sum())
    return probe[:0] + 0 * connected
