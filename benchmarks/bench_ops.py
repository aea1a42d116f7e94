"""Latency of the dynamic convolution: mula_ops against the unfold and grouped
references, forward, backward and forward+backward, one group per comparison.

    pytest benchmarks/bench_ops.py --suite quick --threads 2
"""
import pytest
import torch

from benchmarks.cases import DTYPES, flops, minimal_bytes, unfold_bytes
from benchmarks.passes import make_pass

GB = 1e9


def available_bytes(device: str) -> int:
    if torch.device(device).type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    with open("/proc/meminfo") as meminfo:
        fields = dict(line.split(":", 1) for line in meminfo)
    return int(fields["MemAvailable"].split()[0]) * 1024


def unfold_skip_reason(case, dtype, device, max_gb):
    """unfold keeps its column buffer for the backward and builds another for
    grad_input: about twice the buffer at the peak."""
    columns = unfold_bytes(case, dtype)
    if 2 * columns > 0.8 * available_bytes(device):
        return (f"unfold skipped at {case.label} {dtype}: needs about {2 * columns / GB:.1f} GB, "
                f"{available_bytes(device) / GB:.1f} GB available")
    if columns > max_gb * GB:
        return (f"unfold skipped at {case.label} {dtype}: its {columns / GB:.1f} GB column buffer exceeds "
                f"--unfold-max-gb={max_gb:g} (it would take too long); its memory is measured by "
                f"benchmarks.memory")
    return None


def test_dynamic_conv2d(benchmark, request, case, direction, dtype, device, impl):
    torch_dtype = DTYPES[dtype]
    if impl == "unfold":
        reason = unfold_skip_reason(case, torch_dtype, device, request.config.getoption("--unfold-max-gb"))
        if reason:
            pytest.skip(reason)
    try:
        run = make_pass(impl, case, torch_dtype, device, direction)
        run()  # warm-up: first-call setup (kernel selection, oneDNN primitives) is not timed
    except ImportError as error:
        pytest.skip(f"mula_ops cannot be imported: {error}")
    except NotImplementedError as error:
        pytest.skip(f"{impl} has no {device} kernel in this build: {str(error).split('. ')[0]}")
    benchmark.group = f"{case.label} {direction} {dtype} {device}"
    benchmark.extra_info.update(
        kind="op", impl=impl, case=case.name, batch=case.batch, direction=direction, dtype=dtype,
        device=device, threads=torch.get_num_threads(), flops=flops(case, direction),
        bytes=minimal_bytes(case, torch_dtype, direction))
    benchmark(run)
