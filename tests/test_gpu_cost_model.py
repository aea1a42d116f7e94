"""The emulator's GPU cost model (csrc/emulator/cost_model.h): its counting
rules on micro-kernels whose cost follows from NVIDIA's documented rules (as
Nsight Compute counts them), the block sampling of benchmarks/gpu_model.py
against a full count, and the prediction's arithmetic."""
import json
import os
import subprocess

import pytest

from benchmarks import gpu_model
from benchmarks.cases import ConvCase
from benchmarks.gpu_roofline import GPUS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    binary = str(tmp_path_factory.mktemp("cost_model") / "micro_kernels")
    source = os.path.join(ROOT, "csrc", "emulator", "tests", "cost_model_micro_kernels.cpp")
    subprocess.run([os.environ.get("CXX", "c++"), "-std=c++20", "-O1", "-DMULA_CUDA_EMULATION",
                    "-Wno-unknown-pragmas", "-pthread", "-rdynamic", source, "-o", binary], check=True)
    lines = subprocess.run([binary], check=True, capture_output=True, text=True).stdout.splitlines()
    return {launch["kernel"]: launch for launch in map(json.loads, lines)}


# (kernel, sectors, ideal sectors): the ideal holds the distinct words asked
# for in the fewest sectors (32 words: 4; 64: 8; 16 of them: 2).
@pytest.mark.parametrize("kernel, sectors, ideal", [
    ("global_copy_4_bytes", 4, 4), ("global_copy_8_bytes", 8, 8), ("global_read_stride_2", 8, 4),
    ("global_read_stride_32", 32, 4), ("global_read_offset_1", 5, 4), ("global_read_even_lanes", 4, 2)])
def test_global_sectors_per_request(micro, kernel, sectors, ideal):
    load = micro[kernel]["global_load"]
    assert load["requests"] == 1 and (load["sectors"], load["ideal_sectors"]) == (sectors, ideal)


def test_global_stores_and_distinct_bytes(micro):
    copy = micro["global_copy_4_bytes"]
    assert copy["global_store"]["requests"] == 1 and copy["global_store"]["sectors"] == 4
    assert copy["distinct_global_bytes"] == 2 * 128  # the 128 bytes read and the 128 written
    # 32 elements 32 apart: 32 sectors read, 4 written.
    assert micro["global_read_stride_32"]["distinct_global_bytes"] == (32 + 4) * 32


@pytest.mark.parametrize("kernel, wavefronts, ideal", [
    ("shared_row_read", 1, 1), ("shared_column_read", 32, 1), ("shared_padded_column_read", 1, 1),
    ("shared_broadcast_read", 1, 1), ("shared_read_8_bytes", 2, 2), ("shared_read_16_bytes", 4, 4),
    ("shared_read_stride_2", 2, 1)])
def test_shared_wavefronts_and_bank_conflicts(micro, kernel, wavefronts, ideal):
    load = micro[kernel]["shared_load"]
    assert load["requests"] == 1
    assert (load["wavefronts"], load["ideal_wavefronts"]) == (wavefronts, ideal)
    store = micro[kernel]["shared_store"]  # the fills are row by row: no conflict
    assert store["wavefronts"] == store["ideal_wavefronts"] > 0


def test_arithmetic_shuffles_and_barriers(micro):
    counts = micro["arithmetic"]  # 64 threads: 3 FP32 FMAs and 1 FP64 add each, a warp sum, a barrier
    assert (counts["fp32_fma"], counts["fp64_add"]) == (3 * 64, 64)
    assert counts["fp32_add"] == 2 * 5 * 32  # the warp sum's adds
    assert (counts["shuffle_instructions"], counts["barrier_instructions"]) == (2 * 5, 2)


@pytest.fixture(scope="module")
def cost_model():
    return gpu_model.build_cost_model()


# (case, pass, profiled fraction): whole planes, whole groups. Exact when the
# profiled share of every operand ends on a 32-byte sector (here: 8 of 32
# 5 x 5 filters, 8 output planes of 3 x 3 x 4 taps); otherwise the scaled
# DRAM bytes are off by under a sector per profiled share.
SAMPLED_CASES = [
    (ConvCase("depthwise", 2, 16, 16, 40, 40, 5, padding=2, groups=16), "forward", 0.25),
    (ConvCase("depthwise", 2, 16, 16, 40, 40, 5, padding=2, groups=16), "backward", 0.25),
    (ConvCase("grouped", 2, 8, 16, 16, 16, 3, padding=1, groups=2), "forward", 0.25),
    (ConvCase("grouped", 2, 8, 16, 16, 16, 3, padding=1, groups=2), "backward", 0.25),
]


@pytest.mark.parametrize("case, direction, fraction", SAMPLED_CASES)
def test_sampled_counts_scale_to_the_full_count(cost_model, case, direction, fraction):
    import torch
    full = gpu_model.run_cost_model(cost_model, case, torch.float32, direction, 1.0)
    sampled = gpu_model.run_cost_model(cost_model, case, torch.float32, direction, fraction)
    kernel = full[0]  # the convolution kernel (the finalize pass's grid is not whole planes)
    assert sampled[0]["profiled_blocks"] == kernel["grid_blocks"] * fraction
    scaled = gpu_model.scaled(sampled[0])
    for name, value in gpu_model.scaled(kernel).items():
        if name != "profiled_blocks":
            assert scaled[name] == value, name


def test_prediction_is_the_slowest_limit():
    gpu = GPUS["H100"]
    zero = {"requests": 0, "sectors": 0, "wavefronts": 0, "ideal_wavefronts": 0, "words": 0}
    counts = {"grid_blocks": gpu.sms * 2, "threads_per_block": 256, "shared_bytes": 48 * 1024,
              "distinct_global_bytes": 3.35e6,
              "fp32_fma": 1e6, "fp32_add": 0, "fp64_fma": 0, "fp64_add": 0, "shuffle_instructions": 0,
              "shared_load": dict(zero), "shared_store": dict(zero)}
    prediction = gpu_model.predicted_seconds(counts, gpu)
    assert prediction["bound"] == "dram" and prediction["seconds"] == pytest.approx(1e-6)
    counts["shared_load"]["wavefronts"] = 10 * gpu.sms * gpu.boost_clock_hz * 1e-6  # 10 us of wavefronts
    prediction = gpu_model.predicted_seconds(counts, gpu)
    assert prediction["bound"] == "shared" and prediction["seconds"] == pytest.approx(10e-6)
    slots = counts["grid_blocks"]
    counts["grid_blocks"] += 1  # one block into a second wave: two waves for the work of 1 + 1/slots
    assert gpu_model.predicted_seconds(counts, gpu)["seconds"] == pytest.approx(20e-6 * slots / (slots + 1))


def test_resident_blocks_take_the_tightest_limit():
    gpu = GPUS["H100"]

    def blocks(threads, shared):
        return gpu_model.resident_blocks({"threads_per_block": threads, "shared_bytes": shared}, gpu)
    assert blocks(256, 10_000) == 2  # registers: 512 threads at the launch bounds' 128 registers
    assert blocks(64, 10_000) == 8
    assert blocks(64, 60 * 1024) == 3  # shared memory: 228 KB / 60 KB
    assert blocks(32, 0) == 16 and blocks(1, 0) == gpu_model.MAX_BLOCKS_PER_SM
