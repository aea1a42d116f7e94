"""One timed unit of work: the forward, the backward or both of one
implementation on one case, as a zero-argument callable. Shared by the
latency suite and the memory probes so that both measure the same thing."""
from typing import Callable, List

import torch

from .cases import ConvCase, implementation, make_inputs


def synchronize(device: str) -> None:
    """Wait for queued GPU work so that a timer around a call measures the
    work itself, not its launch."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def cuda_event_seconds(work: Callable[[], None], rounds: int) -> List[float]:
    """The GPU time of each of `rounds` calls of an unsynchronised `work`,
    between CUDA events recorded on the current stream around it: the
    kernels' own time, without the host's launch and synchronisation."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(rounds):
        start.record()
        work()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)  # elapsed_time is in milliseconds
    return times


def make_pass(impl: str, case: ConvCase, dtype: torch.dtype, device: str, direction: str,
              synchronized: bool = True) -> Callable[[], None]:
    """synchronized=False leaves the GPU work queued on return (for
    cuda_event_seconds); on the CPU the two are the same."""
    conv = implementation(impl)
    args = case.conv_args()
    tensors = make_inputs(case, dtype, device, requires_grad=direction != "forward")
    x, w, grad_output = tensors["input"], tensors["weight"], tensors["grad_output"]

    if direction == "forward":
        def work():
            with torch.no_grad():
                conv(x, w, None, **args)
    elif direction == "backward":
        output = conv(x, w, None, **args)  # the graph is kept and reused by every call

        def work():
            torch.autograd.grad(output, (x, w), grad_output, retain_graph=True)
    elif direction == "forward+backward":
        def work():
            output = conv(x, w, None, **args)
            torch.autograd.grad(output, (x, w), grad_output)
    else:
        raise ValueError(f"make_pass: expected direction to be one of forward, backward, "
                         f"forward+backward, got {direction!r}")
    return synchronized_pass(work, device) if synchronized else work


def synchronized_pass(work: Callable[[], None], device: str) -> Callable[[], None]:
    """`work` followed by a wait for its GPU work, so a timer around a call
    measures the work itself."""
    def run():
        work()
        synchronize(device)
    return run
