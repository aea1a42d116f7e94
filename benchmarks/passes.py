"""One timed unit of work: the forward, the backward or both of one
implementation on one case, as a zero-argument callable. Shared by the
latency suite and the memory probes so that both measure the same thing."""
from typing import Callable

import torch

from .cases import ConvCase, implementation, make_inputs


def synchronize(device: str) -> None:
    """Wait for queued GPU work so that a timer around a call measures the
    work itself, not its launch."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def make_pass(impl: str, case: ConvCase, dtype: torch.dtype, device: str, direction: str) -> Callable[[], None]:
    conv = implementation(impl)
    args = case.conv_args()
    tensors = make_inputs(case, dtype, device, requires_grad=direction != "forward")
    x, w, grad_output = tensors["input"], tensors["weight"], tensors["grad_output"]

    if direction == "forward":
        def run():
            with torch.no_grad():
                conv(x, w, None, **args)
            synchronize(device)
    elif direction == "backward":
        output = conv(x, w, None, **args)  # the graph is kept and reused by every call

        def run():
            torch.autograd.grad(output, (x, w), grad_output, retain_graph=True)
            synchronize(device)
    elif direction == "forward+backward":
        def run():
            output = conv(x, w, None, **args)
            torch.autograd.grad(output, (x, w), grad_output)
            synchronize(device)
    else:
        raise ValueError(f"make_pass: expected direction to be one of forward, backward, "
                         f"forward+backward, got {direction!r}")
    return run
