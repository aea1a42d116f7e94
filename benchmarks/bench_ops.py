"""Latency of the dynamic convolution: mula_ops against the unfold and grouped
references, forward, backward and forward+backward, one group per comparison.

    pytest benchmarks/bench_ops.py --suite quick --threads 2
"""
import pytest
import torch

from benchmarks.cases import DTYPES, flops, minimal_bytes, unfold_bytes
from benchmarks.memory import unfold_cannot_fit
from benchmarks.passes import cuda_event_seconds, make_pass, synchronized_pass

GB = 1e9


def unfold_skip_reason(case, dtype, device, max_gb):
    columns = unfold_bytes(case, dtype)
    too_big = unfold_cannot_fit(case, dtype, device)
    if too_big:
        return f"unfold skipped at {case.label} {dtype}: {too_big}"
    if columns > max_gb * GB:
        return (f"unfold skipped at {case.label} {dtype}: its {columns / GB:.1f} GB column buffer exceeds "
                f"--unfold-max-gb={max_gb:g} (it would take too long); its memory is measured by "
                f"benchmarks.memory")
    return None


def test_dynamic_conv2d(benchmark, record_best_time, request, case, direction, dtype, device, impl):
    torch_dtype = DTYPES[dtype]
    if impl == "unfold":
        reason = unfold_skip_reason(case, torch_dtype, device, request.config.getoption("--unfold-max-gb"))
        if reason:
            pytest.skip(reason)
    try:
        work = make_pass(impl, case, torch_dtype, device, direction, synchronized=False)
        run = synchronized_pass(work, device)
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
    if torch.device(device).type == "cuda" and benchmark.stats is not None:
        # The wall clock around a synchronised call also counts the launch and
        # the synchronisation; CUDA events time the GPU work itself, over as
        # many rounds. The report uses these for CUDA.
        times = sorted(cuda_event_seconds(work, benchmark.stats.stats.rounds))
        benchmark.extra_info.update(cuda_event_min=times[0], cuda_event_median=times[len(times) // 2])
    record_best_time(benchmark, impl)
