"""The CUDA kernels on a real GPU: parity with the CPU kernels and a run under
CUDA graphs (torch.compile mode='reduce-overhead'). Skipped without a GPU; the
op tests in test_dynamic_conv.py also run on 'cuda' when one is present."""
import pytest
import torch
from conv_cases import CASES, ConvCase, make_inputs

import mula_ops

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")]

GPU_CASES = {
    "mula_layer": ConvCase(4, 16, 16, 64, 64, (7, 7), padding=(3, 3), groups=16, bias="per_sample"),
    "split_5x5_strided": ConvCase(2, 8, 8, 70, 45, (5, 5), stride=(2, 2), padding=(2, 1), groups=8,
                                  bias="shared"),
    "groups2_3x3": ConvCase(2, 8, 4, 33, 40, (3, 3), padding=(1, 1), groups=2),
}
# Every seventh case of the matrix (a spread over every axis) and planes of several tiles.
PARITY_CASES = CASES[::7] + list(GPU_CASES.values())
# Gradients sum over whole planes in a different order on each device.
TOLERANCES = {torch.float64: 1e-10, torch.float32: 1e-4, torch.bfloat16: 5e-2, torch.float16: 1e-2}


@pytest.mark.parametrize("dtype", list(TOLERANCES), ids=str)
@pytest.mark.parametrize("case", PARITY_CASES, ids=lambda c: c.id)
def test_cuda_matches_cpu(case, dtype):
    cpu = [None if t is None else t.requires_grad_(True) for t in make_inputs(case, dtype=dtype)]
    gpu = [None if t is None else t.detach().cuda().requires_grad_(True) for t in cpu]
    out_cpu = mula_ops.dynamic_conv2d(*cpu, **case.kwargs)
    out_gpu = mula_ops.dynamic_conv2d(*gpu, **case.kwargs)
    tolerance = TOLERANCES[dtype]
    torch.testing.assert_close(out_gpu.cpu(), out_cpu, rtol=tolerance, atol=tolerance)
    grad = torch.randn(out_cpu.shape, dtype=torch.float64).to(dtype)
    out_cpu.backward(grad)
    out_gpu.backward(grad.cuda())
    for name, a, b in zip(("input", "weight", "bias"), cpu, gpu):
        if a is not None:
            torch.testing.assert_close(b.grad.cpu(), a.grad, rtol=tolerance, atol=tolerance * 10,
                                       msg=lambda m: f"grad of {name}: {m}")


def test_cuda_backward_is_bitwise_deterministic():
    case = GPU_CASES["mula_layer"]
    x, w, b = [t.cuda().requires_grad_(True) for t in make_inputs(case, dtype=torch.float32)]
    grads = []
    for _ in range(2):
        out = mula_ops.dynamic_conv2d(x, w, b, **case.kwargs)
        grads.append(torch.autograd.grad(out, (x, w, b), torch.ones_like(out)))
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_runs_on_the_current_stream_and_device():
    case = GPU_CASES["split_5x5_strided"]
    x, w, b = [t.cuda() for t in make_inputs(case, dtype=torch.float32)]
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        out = mula_ops.dynamic_conv2d(x, w, b, **case.kwargs)
    stream.synchronize()
    expected = mula_ops.dynamic_conv2d(x.cpu(), w.cpu(), b.cpu(), **case.kwargs)
    torch.testing.assert_close(out.cpu(), expected, rtol=1e-4, atol=1e-4)


def test_torch_compile_reduce_overhead_cuda_graphs():
    class Layer(torch.nn.Module):
        def forward(self, x, w):
            return torch.relu(mula_ops.dynamic_depthwise_conv2d(x, w, padding=3))

    layer = Layer()
    compiled = torch.compile(layer, mode="reduce-overhead", fullgraph=True)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):  # warm-up, recording, replay
        x = torch.randn(2, 8, 32, 32, generator=generator).cuda().requires_grad_(True)
        w = torch.randn(2, 8, 7, 7, generator=generator).cuda().requires_grad_(True)
        out = compiled(x, w)
        expected = layer(x, w)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        grads = torch.autograd.grad(out.sum(), (x, w))
        expected_grads = torch.autograd.grad(expected.sum(), (x, w))
        for a, b in zip(grads, expected_grads):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_cuda_event_timer_measures_the_gpu_work():
    from benchmarks.passes import cuda_event_seconds
    # torch.cuda._sleep spins the GPU for a number of clock cycles: ten times
    # the cycles take about ten times as long between the events.
    short = min(cuda_event_seconds(lambda: torch.cuda._sleep(1_000_000), 5))
    long = min(cuda_event_seconds(lambda: torch.cuda._sleep(10_000_000), 5))
    assert 0 < short and 5 * short < long < 20 * short, (short, long)
