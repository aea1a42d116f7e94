"""Peak memory of one pass and the largest batch that fits a memory budget.

Every measurement runs in a fresh child process (``python -m
benchmarks.memory probe ...``), so an out-of-memory failure ends only that
probe, and no allocation left over from an earlier measurement is counted.

What is counted, the "extra" memory of a pass: the bytes it allocates on top
of its inputs (input, weight, grad_output), i.e. outputs, gradients, saved
tensors and scratch. For a MuLA training step everything counts that
training needs: the model, its gradients and optimizer state, the batch and
the activations.
- CUDA: the caching allocator's peak minus what was allocated before the pass.
- CPU: the process's resident-set high-water mark (VmHWM, reset through
  /proc/self/clear_refs) minus the resident set before the pass. glibc's
  malloc is told to serve every block above 128 KiB with its own mapping and
  to hand freed memory straight back (MALLOC_MMAP_THRESHOLD_), so what the
  pass allocates shows up in the resident set and nothing is reused unseen.
"""
import argparse
import dataclasses
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

import torch

from .cases import DTYPES, ConvCase, unfold_bytes
from .passes import make_pass
from .training_step import ModelCase, make_training_step

REPO_ROOT = Path(__file__).resolve().parent.parent
_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
# Room above the budget for the address space the process reserves without
# touching it (thread arenas); what decides a probe is the measured peak.
_ADDRESS_SPACE_SLACK = 256 << 20
# Probe outcomes that mean "this batch does not fit the budget".
DID_NOT_FIT = ("over budget", "out of memory", "killed")


def _proc_status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"memory: /proc/self/status has no field {field}")


def available_bytes(device: str) -> int:
    if torch.device(device).type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    with open("/proc/meminfo") as meminfo:
        fields = dict(line.split(":", 1) for line in meminfo)
    return int(fields["MemAvailable"].split()[0]) * 1024


def unfold_cannot_fit(case: ConvCase, dtype: torch.dtype, device: str) -> Optional[str]:
    """Why the unfold reference cannot run here, or None. It keeps its column
    buffer for the backward and builds another for grad_input: about twice
    the buffer at the peak (measured: 6.3 GiB at MuLA's shape, N=16)."""
    needed, available = 2 * unfold_bytes(case, dtype), available_bytes(device)
    if needed > 0.8 * available:
        return f"needs about {needed / 1e9:.1f} GB, {available / 1e9:.1f} GB available on {device}"
    return None


Case = Union[ConvCase, ModelCase]


def _workload(impl: str, case: Case, dtype: str, device: str, direction: str) -> Callable[[], None]:
    if isinstance(case, ModelCase):
        return make_training_step(impl, case, device)
    return make_pass(impl, case, DTYPES[dtype], device, direction)


def _probe(impl: str, case: Case, dtype: str, device: str, direction: str, threads: int,
           budget: Optional[int]) -> Dict:
    """Runs in the child: one warm-up at batch 1 (loads kernels, starts the
    thread pool), then the measured pass at the case's batch. A training
    step's model and optimizer are built inside the measurement."""
    torch.set_num_threads(threads)
    try:
        _workload(impl, case.with_batch(1), dtype, device, direction)()
    except NotImplementedError as error:
        return {"status": "no kernel", "error": str(error).split(". ")[0]}
    gc.collect()
    on_cuda = torch.device(device).type == "cuda"
    counts_setup = isinstance(case, ModelCase)
    try:
        run = None if counts_setup else _workload(impl, case, dtype, device, direction)
        gc.collect()
        if on_cuda:
            torch.cuda.synchronize(device)
            torch.cuda.empty_cache()  # the budget caps reserved memory: drop the warm-up's cached blocks
            before = torch.cuda.memory_allocated(device)
            if budget is not None:
                total = torch.cuda.get_device_properties(device).total_memory
                torch.cuda.set_per_process_memory_fraction(min(1.0, (before + budget) / total), device)
            torch.cuda.reset_peak_memory_stats(device)
        else:
            if budget is not None:
                limit = _proc_status_bytes("VmSize") + budget + _ADDRESS_SPACE_SLACK
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            with open("/proc/self/clear_refs", "w") as clear_refs:
                clear_refs.write("5")  # resets VmHWM to the current resident set
            before = _proc_status_bytes("VmRSS")
        start = time.perf_counter()
        (_workload(impl, case, dtype, device, direction) if counts_setup else run)()
        seconds = time.perf_counter() - start
        peak = (torch.cuda.max_memory_allocated(device) if on_cuda else _proc_status_bytes("VmHWM")) - before
    except (MemoryError, RuntimeError) as error:  # torch.OutOfMemoryError is a RuntimeError
        if "memory" not in str(error).lower() and not isinstance(error, MemoryError):
            raise
        return {"status": "out of memory", "error": str(error).splitlines()[0][:200]}
    fits = budget is None or peak <= budget
    return {"status": "ok" if fits else "over budget", "peak_bytes": peak, "seconds": seconds}


def measure(impl: str, case: Case, dtype: str = "float32", device: str = "cpu",
            direction: str = "forward+backward", threads: int = 2, budget: Optional[int] = None,
            timeout: float = 600.0) -> Dict:
    """Peak extra memory of one pass or training step, measured in a fresh
    child process."""
    workload = (["--model", case.suite, "--batch", str(case.batch)] if isinstance(case, ModelCase)
                else ["--case", json.dumps(dataclasses.asdict(case))])
    command = [sys.executable, "-m", "benchmarks.memory", "probe", "--impl", impl, *workload,
               "--dtype", dtype, "--device", device, "--direction", direction, "--threads", str(threads)]
    if budget is not None:
        command += ["--budget", str(budget)]
    env = dict(os.environ, **_MALLOC_ENV)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    record = {"impl": impl, "case": case.name, "batch": case.batch, "dtype": dtype, "device": device,
              "direction": direction, "budget_bytes": budget}
    try:
        child = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(record, status="timeout", error=f"probe took longer than {timeout:.0f} s")
    if child.returncode < 0:  # killed by a signal, e.g. by the kernel's OOM killer: it did not fit
        return dict(record, status="killed", error=f"probe killed by signal {-child.returncode}")
    if child.returncode > 0:
        tail = (child.stderr.strip().splitlines() or [""])[-1][:200]
        return dict(record, status="error", error=f"exit code {child.returncode}: {tail}")
    return dict(record, **json.loads(child.stdout.strip().splitlines()[-1]))


def largest_batch(impl: str, case: Case, budget: int, dtype: str = "float32", device: str = "cpu",
                  threads: int = 2, start: int = 1, max_batch: int = 1 << 16, timeout: float = 600.0,
                  probe=measure) -> Dict:
    """The largest batch whose forward+backward (or training step) fits
    ``budget`` bytes of extra memory: exponential steps from ``start`` (up while it fits, down while it
    does not), then a binary search between the last batch that fit and the
    first that did not. Every probe is a fresh child process."""
    probes: List[Dict] = []

    def fits(batch: int) -> bool:
        result = probe(impl, case.with_batch(batch), dtype, device, "forward+backward", threads, budget,
                       timeout)
        probes.append(result)
        if result["status"] not in ("ok",) + DID_NOT_FIT:
            raise _ProbeFailed(result)
        return result["status"] == "ok"

    summary = {"impl": impl, "case": case.name, "dtype": dtype, "device": device, "budget_bytes": budget,
               "probes": probes}
    try:
        good, bad = _search(fits, max(1, min(start, max_batch)), max_batch)
    except _ProbeFailed as failure:
        return dict(summary, largest_batch=None, status=failure.result["status"], error=failure.result.get("error"))
    return dict(summary, largest_batch=good, status="ok", reached_max_batch=bad is None)


def _search(fits, start: int, max_batch: int):
    """(largest batch that fits, smallest that does not or None)."""
    if fits(start):
        good, step = start, 1
        while good < max_batch:
            candidate = min(good + step, max_batch)
            if not fits(candidate):
                bad = candidate
                break
            good, step = candidate, step * 2
        else:
            bad = None
    else:
        bad, good = start, 0
        while bad > 1:
            candidate = bad // 2
            if fits(candidate):
                good = candidate
                break
            bad = candidate
    while bad is not None and bad - good > 1:
        middle = (good + bad) // 2
        if fits(middle):
            good = middle
        else:
            bad = middle
    return good, bad


class _ProbeFailed(Exception):
    """A probe that neither fit nor ran out of memory (no kernel, an error, a
    timeout): the search cannot go on."""

    def __init__(self, result: Dict):
        super().__init__(result.get("error"))
        self.result = result


def _case_from_json(text: str) -> ConvCase:
    return ConvCase(**json.loads(text))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    probe = commands.add_parser("probe", help="(child process) measure one pass and print JSON")
    probe.add_argument("--impl", required=True)
    workload = probe.add_mutually_exclusive_group(required=True)
    workload.add_argument("--case", type=_case_from_json, help="ConvCase fields as JSON")
    workload.add_argument("--model", choices=("quick", "full"), help="a MuLA training step of this suite")
    probe.add_argument("--batch", type=int, default=1, help="batch of the --model training step")
    probe.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    probe.add_argument("--device", default="cpu")
    probe.add_argument("--direction", default="forward+backward")
    probe.add_argument("--threads", type=int, default=2)
    probe.add_argument("--budget", type=int, default=None, help="bytes")
    args = parser.parse_args(argv)
    case = args.case if args.case is not None else ModelCase(args.model, args.batch)
    result = _probe(args.impl, case, args.dtype, args.device, args.direction, args.threads, args.budget)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
