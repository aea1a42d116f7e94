"""The shapes, implementations and passes every benchmark suite draws from,
and the work (FLOPs, minimal bytes) of each, so that timings can be set
against the machine's roofline."""
from dataclasses import dataclass, replace
from typing import Callable, Dict, Tuple

import torch

from mula_ops import IMPLEMENTATIONS
from mula_ops._arguments import output_size

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16,
          "float16": torch.float16}
REFERENCES = IMPLEMENTATIONS[1:]
DIRECTIONS = ("forward", "backward", "forward+backward")


@dataclass(frozen=True)
class ConvCase:
    """One per-sample convolution: input (batch, in_channels, height, width),
    weight (batch, out_channels, in_channels / groups, kernel, kernel)."""
    name: str
    batch: int
    in_channels: int
    out_channels: int
    height: int
    width: int
    kernel: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1

    @property
    def label(self) -> str:
        return f"{self.name}-N{self.batch}"

    def with_batch(self, batch: int) -> "ConvCase":
        return replace(self, batch=batch)

    def output_size(self) -> Tuple[int, int]:
        return tuple(output_size(size, self.kernel, self.stride, self.padding, self.dilation)
                     for size in (self.height, self.width))

    def conv_args(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)


def mula_hourglass(batch: int) -> ConvCase:
    """MuLA's Hourglass dynamic depthwise convolution (spec section 1)."""
    return ConvCase("hourglass", batch, 256, 256, 64, 64, 7, padding=3, groups=256)


def mula_vgg(batch: int) -> ConvCase:
    return ConvCase("vgg", batch, 512, 512, 32, 32, 3, padding=1, groups=512)


CASES = {
    "quick": [mula_hourglass(1), mula_hourglass(4)],
    "full": [mula_hourglass(1), mula_hourglass(4), mula_hourglass(16), mula_vgg(4),
             ConvCase("plane128", 4, 64, 64, 128, 128, 3, padding=1, groups=64),
             ConvCase("groups4", 4, 64, 128, 32, 32, 3, padding=1, groups=4),
             ConvCase("dense", 4, 64, 64, 32, 32, 3, padding=1, groups=1),
             ConvCase("pointwise", 4, 128, 128, 32, 32, 1, groups=1),
             ConvCase("stride2", 4, 256, 256, 64, 64, 7, stride=2, padding=3, groups=256),
             ConvCase("dilation2", 4, 256, 256, 64, 64, 7, padding=6, dilation=2, groups=256)],
}


def implementation(name: str) -> Callable:
    import mula_ops  # imported late: a missing build then fails only what needs it
    if name == "mula_ops":
        return mula_ops.dynamic_conv2d
    return mula_ops.reference.IMPLEMENTATIONS[name]


def make_inputs(case: ConvCase, dtype: torch.dtype, device: str, requires_grad: bool,
                seed: int = 0) -> Dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    out_h, out_w = case.output_size()
    shapes = {"input": (case.batch, case.in_channels, case.height, case.width),
              "weight": (case.batch, case.out_channels, case.in_channels // case.groups,
                         case.kernel, case.kernel),
              "grad_output": (case.batch, case.out_channels, out_h, out_w)}
    tensors = {name: torch.randn(shape, generator=generator).to(device=device, dtype=dtype)
               for name, shape in shapes.items()}
    tensors["input"].requires_grad_(requires_grad)
    tensors["weight"].requires_grad_(requires_grad)
    return tensors


def forward_flops(case: ConvCase) -> int:
    out_h, out_w = case.output_size()
    macs = case.batch * case.out_channels * out_h * out_w * (case.in_channels // case.groups) * case.kernel ** 2
    return 2 * macs


def flops(case: ConvCase, direction: str) -> int:
    """Multiply-adds x 2; the backward computes grad_input and grad_weight,
    each as much work as the forward."""
    return forward_flops(case) * {"forward": 1, "backward": 2, "forward+backward": 3}[direction]


def tensor_bytes(case: ConvCase, dtype: torch.dtype) -> Dict[str, int]:
    size = torch.tensor([], dtype=dtype).element_size()
    out_h, out_w = case.output_size()
    return {"input": case.batch * case.in_channels * case.height * case.width * size,
            "weight": case.batch * case.out_channels * (case.in_channels // case.groups) * case.kernel ** 2 * size,
            "output": case.batch * case.out_channels * out_h * out_w * size}


def minimal_bytes(case: ConvCase, dtype: torch.dtype, direction: str) -> int:
    """Bytes that must cross memory at least once: forward reads input and
    weight and writes output; backward reads grad_output, input and weight and
    writes grad_input and grad_weight."""
    sizes = tensor_bytes(case, dtype)
    forward = sizes["input"] + sizes["weight"] + sizes["output"]
    backward = sizes["output"] + 2 * (sizes["input"] + sizes["weight"])
    return {"forward": forward, "backward": backward, "forward+backward": forward + backward}[direction]


def unfold_bytes(case: ConvCase, dtype: torch.dtype) -> int:
    """The unfold reference's column buffer: every input pixel kernel^2 times."""
    out_h, out_w = case.output_size()
    size = torch.tensor([], dtype=dtype).element_size()
    return case.batch * case.in_channels * case.kernel ** 2 * out_h * out_w * size
