"""The check for the day a GPU is there: one command that builds mula_ops for
this GPU, runs the GPU tests, checks CUDA against the CPU at the report's
shapes, times mula_ops and both references with CUDA events, measures a
spec-sized MuLA training step per implementation (time and peak memory),
and, with Nsight Compute on the PATH, sets the cost model's counters beside
the measured ones.

    python -m benchmarks.gpu_validate --out DIR   # DIR/gpu_validate.md, DIR/gpu_validate.json

Needs a CUDA GPU, nvcc and a CUDA build of torch (2.6 or later); no network.
Without a GPU it says so in one line and exits with status 2; a failed
build, test or parity check gives status 1 (the report is written anyway)."""
import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch

# Nothing here imports mula_ops at module level: the extension is built first.
ROOT = Path(__file__).resolve().parent.parent
# Largest |CUDA - CPU float64| over the largest |CPU float64| allowed per
# tensor: rounding of the output dtype and a different summation order.
PARITY_TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 4e-3}
PARITY_BATCH = 2
TRAINING_BATCHES = (8, 16)
TRAINING_STEPS = 5
WARMUP_ROUNDS = 3


def gpu_key(device_name: str) -> Optional[str]:
    """The gpu_roofline.GPUS entry of this device ('NVIDIA H100 80GB HBM3' -> 'H100'), if any."""
    from .gpu_roofline import GPUS
    return next((key for key in GPUS if key in device_name), None)


def build_extension(out_dir: Path) -> Dict:
    """mula_ops._C in place, for this GPU's architecture only."""
    major, minor = torch.cuda.get_device_capability()
    env = {**os.environ, "TORCH_CUDA_ARCH_LIST": f"{major}.{minor}", "MAX_JOBS": str(os.cpu_count())}
    started = time.perf_counter()
    with open(out_dir / "build.log", "w") as log:
        result = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    return {"arch": f"sm_{major}{minor}", "ok": result.returncode == 0,
            "seconds": time.perf_counter() - started, "log": "build.log"}


def run_gpu_tests(out_dir: Path) -> Dict:
    """The op tests on CUDA and tests/test_cuda_gpu.py; counts from pytest's JUnit XML."""
    report = out_dir / "gpu_tests.xml"
    started = time.perf_counter()
    with open(out_dir / "gpu_tests.log", "w") as log:
        result = subprocess.run([sys.executable, "-m", "pytest", "tests/test_cuda_gpu.py", "tests/test_dynamic_conv.py",
                                 "-k", "cuda", "-q", "-p", "no:cacheprovider", f"--junitxml={report}"],
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    counts = junit_counts(report.read_text()) if report.exists() else {}
    return {"ok": result.returncode == 0, "seconds": time.perf_counter() - started, **counts,
            "log": "gpu_tests.log"}


def junit_counts(xml: str) -> Dict[str, int]:
    root = ElementTree.fromstring(xml)
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = {name: sum(int(s.get(name, 0)) for s in suites) for name in ("tests", "failures", "errors", "skipped")}
    total["passed"] = total["tests"] - total["failures"] - total["errors"] - total["skipped"]
    return total


def start_cost_model(out_dir: Path) -> subprocess.Popen:
    """The cost model of the same cases, on the CPU cores while the GPU works."""
    log = open(out_dir / "gpu_model.log", "w")
    return subprocess.Popen([sys.executable, "-m", "benchmarks.gpu_model", "--out", str(out_dir)], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT)


def relative_error(value: torch.Tensor, expected: torch.Tensor) -> float:
    return ((value.double().cpu() - expected).abs().max() / expected.abs().max().clamp_min(1e-300)).item()


def parity_rows(cases: Optional[Sequence] = None, device: str = "cuda") -> List[Dict]:
    """Output and gradients of mula_ops on `device` against mula_ops in
    float64 on the CPU (itself tested against PyTorch's conv), from the same
    inputs; `cases` (case, dtype) default to the report's, at N=PARITY_BATCH."""
    import mula_ops

    from .cases import make_inputs
    from .gpu_roofline import FLOOR_CASES
    cases = [(case.with_batch(PARITY_BATCH), dtype) for case, dtype in FLOOR_CASES] if cases is None else cases
    rows = []
    for case, dtype in cases:
        tensors = make_inputs(case, dtype, device, requires_grad=True)
        x, w, grad = tensors["input"], tensors["weight"], tensors["grad_output"]
        out = mula_ops.dynamic_conv2d(x, w, None, **case.conv_args())
        results = (out, *torch.autograd.grad(out, (x, w), grad))
        x64, w64 = (t.detach().cpu().double().requires_grad_(True) for t in (x, w))
        out64 = mula_ops.dynamic_conv2d(x64, w64, None, **case.conv_args())
        expected = (out64, *torch.autograd.grad(out64, (x64, w64), grad.cpu().double()))
        errors = {name: relative_error(a.detach(), b.detach())
                  for name, a, b in zip(("output", "grad_input", "grad_weight"), results, expected)}
        tolerance = PARITY_TOLERANCE[dtype]
        rows.append({"case": case.label, "dtype": str(dtype).removeprefix("torch."), "errors": errors,
                     "tolerance": tolerance, "ok": all(e <= tolerance for e in errors.values())})
    return rows


def measured(row: Dict, measure: Callable[[], Dict]) -> Dict:
    """row with measure()'s figures, or with its error when the GPU ran out of
    memory; what measure() allocated is released either way."""
    try:
        row.update(measure())
    except torch.cuda.OutOfMemoryError:
        row["error"] = "out of memory"
    gc.collect()
    torch.cuda.empty_cache()
    return row


def timing_rows(rounds: int) -> List[Dict]:
    """GPU time between CUDA events of each implementation, case and pass."""
    from mula_ops import IMPLEMENTATIONS

    from .cases import DIRECTIONS
    from .gpu_roofline import FLOOR_CASES
    from .passes import cuda_event_seconds, make_pass
    rows = []
    for case, dtype in FLOOR_CASES:
        for direction in DIRECTIONS:
            for impl in IMPLEMENTATIONS:
                row = {"case": case.label, "dtype": str(dtype).removeprefix("torch."), "pass": direction,
                       "implementation": impl}

                def time_pass():
                    work = make_pass(impl, case, dtype, "cuda", direction, synchronized=False)
                    cuda_event_seconds(work, WARMUP_ROUNDS)
                    times = cuda_event_seconds(work, rounds)
                    return {"median_us": statistics.median(times) * 1e6, "min_us": min(times) * 1e6,
                            "rounds": rounds}
                rows.append(measured(row, time_pass))
    return rows


def training_rows() -> List[Dict]:
    """A spec-sized MuLA training step per implementation and batch: the
    median wall time of its steps (each ends with a synchronisation) and the
    allocator's peak over them, everything training holds included."""
    from mula_ops import IMPLEMENTATIONS

    from .training_step import ModelCase, make_training_step
    rows = []
    for impl in IMPLEMENTATIONS:
        for batch in TRAINING_BATCHES:
            row = {"implementation": impl, "batch": batch}

            def time_steps():
                step = make_training_step(impl, ModelCase("full", batch), "cuda")
                for _ in range(2):
                    step()
                torch.cuda.reset_peak_memory_stats()
                times = []
                for _ in range(TRAINING_STEPS):
                    started = time.perf_counter()
                    step()
                    times.append(time.perf_counter() - started)
                return {"step_ms": statistics.median(times) * 1e3, "peak_bytes": torch.cuda.max_memory_allocated()}
            rows.append(measured(row, time_steps))
    return rows


def speedups(timings: Sequence[Dict], model_passes: Sequence[Dict], gpu: Optional[str]) -> List[Dict]:
    """Per case and pass: mula_ops' median, each reference's median over it,
    and, for the GPU the model knows, mula_ops against the model's prediction
    and the floor (forward+backward: the sums of the two passes)."""
    by_key = {(r["case"], r["dtype"], r["pass"], r["implementation"]): r for r in timings}
    model = {(p["case"], p["dtype"], p["pass"]): p for p in model_passes}
    rows = []
    for (case, dtype, direction, impl), row in by_key.items():
        if impl != "mula_ops" or "median_us" not in row:
            continue
        summary = {"case": case, "dtype": dtype, "pass": direction, "mula_ops_us": row["median_us"],
                   "speedup": {}, "predicted_us": None, "floor_us": None}
        for (c, d, p, other), ref in by_key.items():
            if (c, d, p) == (case, dtype, direction) and other != "mula_ops" and "median_us" in ref:
                summary["speedup"][other] = ref["median_us"] / row["median_us"]
        parts = ("forward", "backward") if direction == "forward+backward" else (direction,)
        if gpu and all((case, dtype, part) in model for part in parts):
            summary["predicted_us"] = sum(model[(case, dtype, part)]["predicted_us"][gpu] for part in parts)
            summary["floor_us"] = sum(model[(case, dtype, part)]["floor_us"][gpu] for part in parts)
        rows.append(summary)
    return rows


def memory_per_sample(training: Sequence[Dict]) -> Dict[str, float]:
    """Per implementation, the peak's growth per sample between the two
    measured batches: what decides the largest batch that fits."""
    peaks = {}
    for row in training:
        if "peak_bytes" in row:
            peaks.setdefault(row["implementation"], {})[row["batch"]] = row["peak_bytes"]
    low, high = TRAINING_BATCHES
    return {impl: (p[high] - p[low]) / (high - low) for impl, p in peaks.items() if low in p and high in p}


def _us(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:,.1f}"


def render_markdown(report: Dict) -> str:
    machine, build, tests = report["machine"], report["build"], report["tests"]
    lines = [f"# gpu_validate on {machine['gpu']} ({build['arch']}), torch {machine['torch']}, "
             f"CUDA {machine['cuda']}, commit {machine['commit']}", "",
             f"- build for {build['arch']} only: {'ok' if build['ok'] else 'FAILED'} in {build['seconds']:.0f} s",
             f"- GPU tests: {tests.get('passed', 0)} passed, {tests.get('failures', 0)} failed, "
             f"{tests.get('errors', 0)} errors, {tests.get('skipped', 0)} skipped in {tests['seconds']:.0f} s", "",
             f"CUDA against the CPU in float64 (N={PARITY_BATCH}; largest error over the largest value):", "",
             "| case | dtype | output | grad_input | grad_weight | tolerance | |", "|---|---|---:|---:|---:|---:|---|"]
    for r in report["parity"]:
        e = r["errors"]
        lines.append(f"| {r['case']} | {r['dtype']} | {e['output']:.1e} | {e['grad_input']:.1e} | "
                     f"{e['grad_weight']:.1e} | {r['tolerance']:.0e} | {'ok' if r['ok'] else 'FAILED'} |")
    gpu = machine["model_gpu"]
    lines += ["", f"GPU time between CUDA events (median of {report['rounds']} after {WARMUP_ROUNDS} warm-ups); "
              f"speed-up = reference / mula_ops; model and floor for {gpu or 'no GPU the model knows'}:", "",
              "| case | dtype | pass | mula_ops us | model us | floor us | vs grouped | vs unfold |",
              "|---|---|---|---:|---:|---:|---:|---:|"]
    for s in report["speedups"]:
        ratios = [f"{s['speedup'][ref]:.2f}x" if ref in s["speedup"] else "-" for ref in ("grouped", "unfold")]
        lines.append(f"| {s['case']} | {s['dtype']} | {s['pass']} | {_us(s['mula_ops_us'])} | "
                     f"{_us(s['predicted_us'])} | {_us(s['floor_us'])} | " + " | ".join(ratios) + " |")
    lines += ["", f"One spec-sized MuLA training step (5 stages, 256x256; median of {TRAINING_STEPS}) and the "
              "allocator's peak:", "", "| implementation | batch | step ms | peak GiB |", "|---|---:|---:|---:|"]
    for r in report["training"]:
        cells = (f"{r['step_ms']:,.1f} | {r['peak_bytes'] / 2**30:,.2f}" if "step_ms" in r else f"{r['error']} | -")
        lines.append(f"| {r['implementation']} | {r['batch']} | {cells} |")
    per_sample = report["memory_per_sample"]
    if "mula_ops" in per_sample:
        lines += ["", "Peak growth per sample: " + ", ".join(
            f"{impl} {b / 2**20:,.0f} MiB ({b / per_sample['mula_ops']:.2f}x mula_ops)"
            for impl, b in per_sample.items()) + "."]
    lines += [""]
    if report.get("ncu_markdown"):
        lines.append(report["ncu_markdown"])
    else:
        lines.append(f"Nsight Compute counters: {report.get('ncu_error', 'ncu is not on the PATH')}.")
    return "\n".join(lines) + "\n"


def commit() -> str:
    result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return result.stdout.strip() or "unknown"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu-validate"))
    parser.add_argument("--rounds", type=int, default=20, help="timed calls per pass (default 20)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_validate: no CUDA GPU here (torch.cuda.is_available() is False); run it on a machine with one")
        return 2
    started = time.perf_counter()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name()
    report = {"machine": {"gpu": name, "model_gpu": None, "torch": torch.__version__,
                          "cuda": torch.version.cuda, "commit": commit()}, "rounds": args.rounds}
    report["build"] = build_extension(out)
    report["tests"], report["parity"], report["timings"], report["training"] = {"seconds": 0}, [], [], []
    report["speedups"], report["memory_per_sample"] = [], {}
    if report["build"]["ok"]:
        report["machine"]["model_gpu"] = gpu_key(name)
        model = start_cost_model(out)
        report["tests"] = run_gpu_tests(out)
        report["parity"] = parity_rows()
        model_ok = model.wait() == 0
        report["timings"] = timing_rows(args.rounds)
        report["training"] = training_rows()
        model_report = json.loads((out / "gpu_model.json").read_text()) if model_ok else {"rows": [], "passes": []}
        gpu = report["machine"]["model_gpu"]
        report["speedups"] = speedups(report["timings"], model_report["passes"], gpu)
        report["memory_per_sample"] = memory_per_sample(report["training"])
        if not model_ok:
            report["ncu_error"] = "not compared: the cost model failed (see gpu_model.log)"
        elif shutil.which("ncu"):
            from . import ncu_counters
            try:
                report["ncu"] = ncu_counters.compare(model_report["rows"], ncu_counters.measure(out), gpu)
                report["ncu_markdown"] = ncu_counters.render_comparison(report["ncu"], gpu)
            except (RuntimeError, ValueError) as error:
                report["ncu_error"] = str(error)
    report["seconds"] = time.perf_counter() - started
    (out / "gpu_validate.json").write_text(json.dumps(report, indent=1))
    markdown = render_markdown(report)
    (out / "gpu_validate.md").write_text(markdown)
    print(markdown)
    print(f"gpu_validate ran in {report['seconds']:.0f} s; wrote {out}/gpu_validate.md and .json")
    ok = report["build"]["ok"] and report["tests"].get("ok", False) and all(r["ok"] for r in report["parity"])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
