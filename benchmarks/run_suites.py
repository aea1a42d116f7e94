"""Runs the benchmark suites for the report: the latency suites (pytest-
benchmark, into latency.json), the memory probes and largest-batch searches
(into memory.json) and a description of the machine (machine.json)."""
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import torch

from mula_model.data import atomic_write

from . import memory
from .cases import CASES, DTYPES, IMPLEMENTATIONS, mula_hourglass
from .results import HEADLINE_BATCH, HEADLINE_CASE, MIB, MODEL_PEAK_BATCH
from .training_step import ModelCase

MODES = {
    # Peak memory at N=16 (issue 2) and the largest batch in a budget small
    # enough that the slow grouped backward keeps the quick mode short. The
    # largest trainable batch of the suite's MuLA model (training_step.py)
    # takes a process per probe and seconds per step: full mode only, unless
    # a budget is given.
    "quick": {"memory_cases": [mula_hourglass(16)], "memory_dtypes": ("float32",), "budget_mib": 128,
              "model_budget_mib": None,
              "pytest": ["--benchmark-min-rounds=2", "--benchmark-max-time=0.5"]},
    "full": {"memory_cases": CASES["full"], "memory_dtypes": ("float32", "bfloat16"), "budget_mib": 1024,
             "model_budget_mib": 8192,
             "pytest": ["--benchmark-min-rounds=3", "--benchmark-max-time=2.0"]},
}


def machine_description(threads: int) -> Dict:
    model = platform.processor()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                     if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=memory.REPO_ROOT).stdout.strip() or None
    except OSError:
        commit = None
    return {"cpu": model, "logical_cpus": torch.multiprocessing.cpu_count(), "torch": torch.__version__,
            "threads": threads, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(), "commit": commit,
            # Other processes on the machine distort the timings (threads wait at barriers for a descheduled peer).
            "load_average_1min": os.getloadavg()[0],
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def run_latency(mode: str, out: Path, threads: int, device: str) -> None:
    suites = ["bench_machine.py", "bench_ops.py"] + (["bench_model.py"] if mode == "full" else [])
    command = ([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"]
               + [str(memory.REPO_ROOT / "benchmarks" / suite) for suite in suites]
               + ["--suite", mode, "--threads", str(threads), "--device", device,
                  f"--benchmark-json={out / 'latency.json'}"] + MODES[mode]["pytest"])
    print("$", " ".join(command), flush=True)
    result = subprocess.run(command, cwd=memory.REPO_ROOT)
    if result.returncode != 0:
        raise SystemExit(f"benchmarks.report: the latency suites failed (exit code {result.returncode})")


def memory_devices(device: str) -> List[str]:
    if device == "auto":
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return [device]


def run_memory(mode: str, out: Path, threads: int, device: str, budget_mib: int,
               model_budget_mib: Optional[int]) -> None:
    settings = MODES[mode]
    peaks, largest, model_peaks, model_largest = [], [], [], []
    for dev in memory_devices(device):
        for dtype in settings["memory_dtypes"]:
            for case in settings["memory_cases"]:
                for impl in IMPLEMENTATIONS:
                    too_big = impl == "unfold" and memory.unfold_cannot_fit(case, DTYPES[dtype], dev)
                    result = (dict(impl=impl, case=case.name, batch=case.batch, dtype=dtype, device=dev,
                                   status="skipped", error=too_big) if too_big
                              else memory.measure(impl, case, dtype, dev, threads=threads))
                    print(f"memory {impl:9s} {case.label:14s} {dtype:9s} {dev}: {describe_probe(result)}",
                          flush=True)
                    peaks.append(result)
        headline = mula_hourglass(HEADLINE_BATCH)
        budget = budget_mib * MIB
        for impl in IMPLEMENTATIONS:
            start = first_guess(peaks, impl, dev, budget)
            result = memory.largest_batch(impl, headline, budget, "float32", dev, threads, start=start)
            outcome = result["largest_batch"] if result["status"] == "ok" else \
                f"{result['status']}: {result.get('error')}"
            print(f"largest batch {impl:9s} in {budget_mib} MiB on {dev}: {outcome} "
                  f"({len(result['probes'])} probes)", flush=True)
            largest.append(result)
        for impl in IMPLEMENTATIONS if model_budget_mib else ():
            model_budget = model_budget_mib * MIB
            sample = memory.measure(impl, ModelCase(mode, MODEL_PEAK_BATCH), device=dev, threads=threads)
            print(f"memory {impl:9s} MuLA-{mode} N={MODEL_PEAK_BATCH} training step on {dev}: "
                  f"{describe_probe(sample)}", flush=True)
            model_peaks.append(sample)
            # The model's fixed share makes this guess low: the search then steps up.
            start = (max(1, int(model_budget // (sample["peak_bytes"] / MODEL_PEAK_BATCH)))
                     if sample["status"] == "ok" else 1)
            result = memory.largest_batch(impl, ModelCase(mode, 1), model_budget, "float32", dev, threads,
                                          start=start)
            outcome = result["largest_batch"] if result["status"] == "ok" else \
                f"{result['status']}: {result.get('error')}"
            print(f"largest MuLA-{mode} training batch {impl:9s} in {model_budget_mib} MiB on {dev}: {outcome} "
                  f"({len(result['probes'])} probes)", flush=True)
            model_largest.append(dict(result, model=ModelCase(mode, 1).describe()))
    atomic_write(out / "memory.json", json.dumps({"peaks": peaks, "largest_batch": largest,
                                                   "model_peaks": model_peaks,
                                                   "model_largest_batch": model_largest}, indent=1).encode())


def describe_probe(result: Dict) -> str:
    if result["status"] == "ok":
        return f"{result['peak_bytes'] / MIB:,.0f} MiB extra in {result['seconds']:.1f} s"
    return f"{result['status']}: {result.get('error', '')}"


def first_guess(peaks: List[Dict], impl: str, device: str, budget: int) -> int:
    """Where the search starts: the budget over the per-sample memory measured
    at MuLA's shape, so that a linear footprint is bracketed in two probes."""
    measured = [peak for peak in peaks if (peak["impl"], peak["case"], peak["device"], peak["dtype"], peak["status"])
                == (impl, HEADLINE_CASE, device, "float32", "ok") and peak["peak_bytes"] > 0]
    if not measured:
        return 1
    largest = max(measured, key=lambda peak: peak["batch"])  # the fixed overhead weighs least there
    return max(1, int(budget // (largest["peak_bytes"] / largest["batch"])))
