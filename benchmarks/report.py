"""Run the benchmark suites and turn their results into a Markdown report and
PNG plots.

    python -m benchmarks.report --quick          # < 3 minutes on a 2-core CPU
    python -m benchmarks.report                  # full mode
    python -m benchmarks.report --render-only    # re-render saved results

Writes into --out (default benchmark-results/): latency.json
(pytest-benchmark), memory.json, machine.json, report.md and *.png.
"""
import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

from . import memory
from .cases import CASES, DIRECTIONS, DTYPES, IMPLEMENTATIONS, REFERENCES, mula_hourglass
from .training_step import ModelCase

MIB = 1 << 20
HEADLINE_CASE = "hourglass"
HEADLINE_BATCH = 4
# The training step's memory is measured at this batch; it also seeds the search.
MODEL_PEAK_BATCH = 2
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


# --------------------------------------------------------------------------- running

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
    (out / "memory.json").write_text(json.dumps({"peaks": peaks, "largest_batch": largest,
                                                 "model_peaks": model_peaks, "model_largest_batch": model_largest},
                                                indent=1))


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


# --------------------------------------------------------------------------- loading

def load_latency(path: Path) -> Dict:
    """Op timings keyed by (case, batch, direction, dtype, device, impl) and the
    machine's peak FLOP/s and bandwidth per device."""
    data = json.loads(path.read_text())
    ops, machine = {}, {}
    for bench in data["benchmarks"]:
        info, stats = bench["extra_info"], bench["stats"]
        if info.get("kind") == "op":
            key = (info["case"], info["batch"], info["direction"], info["dtype"], info["device"], info["impl"])
            # CUDA: the GPU time between CUDA events, where the suite recorded it.
            ops[key] = dict(info, min=info.get("cuda_event_min", stats["min"]),
                            median=info.get("cuda_event_median", stats["median"]), rounds=stats["rounds"])
        elif info.get("kind") == "machine":
            entry = machine.setdefault(info["device"], {})
            if info["metric"] == "matmul":
                entry["flops_per_s"] = info["flops"] / stats["min"]
            else:
                entry["bytes_per_s"] = info["bytes"] / stats["min"]
        elif info.get("kind") == "model":
            ops[(info["case"], info["batch"], "training step", info["dtype"], info["device"], info["impl"])] = \
                dict(info, min=stats["min"], median=stats["median"], rounds=stats["rounds"])
    return {"ops": ops, "machine": machine, "skipped": data.get("skipped", [])}


def roofline(entry: Dict, machine: Dict) -> Dict:
    """Achieved FLOP/s, its fraction of the measured matmul FLOP/s, and the
    fraction of the roofline: the time the work needs at the measured FLOP/s
    or the measured bandwidth, whichever is slower, over the time it took."""
    limits = machine.get(entry["device"], {})
    if "flops" not in entry or "flops_per_s" not in limits:
        return {}
    achieved = entry["flops"] / entry["min"]
    bound = max(entry["flops"] / limits["flops_per_s"], entry["bytes"] / limits.get("bytes_per_s", math.inf))
    return {"flops_per_s": achieved, "of_matmul": achieved / limits["flops_per_s"],
            "of_roofline": bound / entry["min"]}


# --------------------------------------------------------------------------- rendering

def _ms(seconds: Optional[float]) -> str:
    if seconds is None:
        return "—"
    return f"{seconds * 1e3:,.1f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def _speedup(reference: Optional[Dict], ours: Optional[Dict]) -> str:
    if not reference or not ours:
        return "—"
    return f"{reference['min'] / ours['min']:,.1f}x"


def _pct(value: Optional[float]) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def comparison_rows(latency: Dict):
    """One row per (case, batch, direction, dtype, device) with the three
    implementations side by side."""
    order = {direction: index for index, direction in enumerate(DIRECTIONS)}
    groups = sorted({key[:5] for key in latency["ops"]},
                    key=lambda k: (k[0], k[1], k[3], k[4], order.get(k[2], len(order))))
    for group in groups:
        yield group, {impl: latency["ops"].get(group + (impl,)) for impl in IMPLEMENTATIONS}


def render_markdown(latency: Dict, mem: Dict, machine: Dict, command: str) -> str:
    limits = latency["machine"]
    lines = [f"Measured by `{command}` on {machine['cpu']} ({machine['logical_cpus']} logical CPUs"
             + (f", {machine['gpu']}" if machine.get("gpu") else "")
             + f"), torch {machine['torch']}, {machine['threads']} threads, commit {machine['commit']}, "
             f"{machine['date']}, load average {machine.get('load_average_1min', math.nan):.1f} at the start. "
             "Times are the minimum over the rounds of pytest-benchmark.", ""]
    for device, entry in sorted(limits.items()):
        lines.append(f"Machine limits on {device} (same run): float32 matrix product "
                     f"{entry.get('flops_per_s', math.nan) / 1e9:,.0f} GFLOP/s, copy "
                     f"{entry.get('bytes_per_s', math.nan) / 1e9:,.1f} GB/s (read + write).")
    lines += headline(latency, mem)
    lines += ["", "| case | pass | dtype | device | mula_ops | grouped | unfold | speed-up vs grouped "
              "| speed-up vs unfold | mula_ops GFLOP/s | of matmul peak | of roofline |",
              "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (case, batch, direction, dtype, device), row in comparison_rows(latency):
        ours = row["mula_ops"]
        fractions = roofline(ours, limits) if ours else {}
        flops = fractions.get("flops_per_s")
        lines.append(f"| {case} N={batch} | {direction} | {dtype} | {device} | "
                     + " | ".join(_ms(row[impl]["min"] if row[impl] else None) for impl in IMPLEMENTATIONS)
                     + f" | {_speedup(row['grouped'], ours)} | {_speedup(row['unfold'], ours)} | "
                     + ("—" if flops is None else f"{flops / 1e9:,.0f}")
                     + f" | {_pct(fractions.get('of_matmul'))} | {_pct(fractions.get('of_roofline'))} |")
    if latency["skipped"]:
        lines += ["", "Skipped:"] + [f"- {reason}" for reason in latency["skipped"]]
    if mem.get("peaks"):
        lines += ["", "Peak extra memory of forward+backward (outputs, gradients, saved tensors, scratch; "
                  "inputs not counted), each in a fresh process:", "",
                  "| case | dtype | device | " + " | ".join(IMPLEMENTATIONS) + " |",
                  "|---|---|---|" + "---:|" * len(IMPLEMENTATIONS)]
        keys = sorted({(p["case"], p["batch"], p["dtype"], p["device"]) for p in mem["peaks"]})
        for case, batch, dtype, device in keys:
            cells = []
            for impl in IMPLEMENTATIONS:
                match = [p for p in mem["peaks"] if (p["case"], p["batch"], p["dtype"], p["device"], p["impl"])
                         == (case, batch, dtype, device, impl)]
                cells.append(_memory_cell(match[0]) if match else "—")
            lines.append(f"| {case} N={batch} | {dtype} | {device} | " + " | ".join(cells) + " |")
    if mem.get("largest_batch"):
        lines += ["", "Largest batch whose forward+backward at MuLA's Hourglass shape (C 256, 64x64, 7x7, "
                  "float32) fits the budget, found by exponential then binary search, one process per probe:", "",
                  "| device | budget | " + " | ".join(IMPLEMENTATIONS) + " |",
                  "|---|---:|" + "---:|" * len(IMPLEMENTATIONS)]
        for device in sorted({entry["device"] for entry in mem["largest_batch"]}):
            entries = {e["impl"]: e for e in mem["largest_batch"] if e["device"] == device}
            budget = next(iter(entries.values()))["budget_bytes"]
            lines.append(f"| {device} | {budget / MIB:,.0f} MiB | "
                         + " | ".join(_largest_cell(entries.get(impl)) for impl in IMPLEMENTATIONS) + " |")
    lines += training_batch_table(mem)
    return "\n".join(lines) + "\n"


def training_batch_table(mem: Dict) -> List[str]:
    """Memory of one MuLA training step and the largest trainable batch."""
    if not mem.get("model_largest_batch"):
        return []
    lines = ["", "One MuLA training step (forward, loss, backward, RMSprop; counted: model, gradients, "
             "optimizer state, batch, activations), each in a fresh process; largest batch found by "
             "exponential then binary search:", "",
             "| device | model | measure | " + " | ".join(IMPLEMENTATIONS) + " |",
             "|---|---|---|" + "---:|" * len(IMPLEMENTATIONS)]
    for device in sorted({entry["device"] for entry in mem["model_largest_batch"]}):
        peaks = {p["impl"]: p for p in mem.get("model_peaks", []) if p["device"] == device}
        entries = {e["impl"]: e for e in mem["model_largest_batch"] if e["device"] == device}
        first = next(iter(entries.values()))
        model = first["model"]
        if peaks:
            batch = next(iter(peaks.values()))["batch"]
            lines.append(f"| {device} | {model} | memory at N={batch} | "
                         + " | ".join(_memory_cell(peaks[impl]) if impl in peaks else "—"
                                      for impl in IMPLEMENTATIONS) + " |")
        lines.append(f"| {device} | {model} | largest batch in {first['budget_bytes'] / MIB:,.0f} MiB | "
                     + " | ".join(_largest_cell(entries.get(impl)) for impl in IMPLEMENTATIONS) + " |")
    return lines


def headline(latency: Dict, mem: Dict) -> List[str]:
    """MuLA's Hourglass shape at N=4, float32, on the CPU: the figures issue 2 asks for."""
    lines = []
    for direction in ("forward", "forward+backward"):
        row = {impl: latency["ops"].get((HEADLINE_CASE, HEADLINE_BATCH, direction, "float32", "cpu", impl))
               for impl in IMPLEMENTATIONS}
        if row["mula_ops"]:
            of_matmul = roofline(row["mula_ops"], latency["machine"]).get("of_matmul")
            lines.append(f"- {direction}: mula_ops {_ms(row['mula_ops']['min'])}, "
                         f"{_speedup(row['grouped'], row['mula_ops'])} faster than grouped, "
                         f"{_speedup(row['unfold'], row['mula_ops'])} faster than unfold, "
                         f"{_pct(of_matmul)} of the measured matmul FLOP/s")
    peaks = {p["impl"]: p for p in mem.get("peaks", []) if (p["case"], p["batch"], p["dtype"], p["device"])
             == (HEADLINE_CASE, 16, "float32", "cpu")}
    if peaks:
        lines.append("- peak extra memory of forward+backward at N=16: "
                     + ", ".join(f"{impl} {_memory_cell(peaks[impl])}" for impl in IMPLEMENTATIONS if impl in peaks))
    trainable = {e["impl"]: e for e in mem.get("model_largest_batch", []) if e["device"] == "cpu"}
    if trainable:
        first = next(iter(trainable.values()))
        lines.append(f"- largest trainable batch of the {first['model']} in {first['budget_bytes'] / MIB:,.0f} MiB: "
                     + ", ".join(f"{impl} {_largest_cell(trainable[impl])}" for impl in IMPLEMENTATIONS
                                 if impl in trainable))
    if lines:
        lines = ["", f"MuLA's Hourglass shape (N={HEADLINE_BATCH}, C 256, 64x64, 7x7, float32, CPU):"] + lines
    return lines


def _largest_cell(entry: Optional[Dict]) -> str:
    if entry is None:
        return "—"
    if entry["largest_batch"] is None:
        return entry["status"]
    return f"{entry['largest_batch']}" + ("+" if entry.get("reached_max_batch") else "")


def _memory_cell(peak: Dict) -> str:
    if peak["status"] == "ok":
        return f"{peak['peak_bytes'] / MIB:,.0f} MiB"
    return peak["status"]


def render_plots(latency: Dict, mem: Dict, out: Path) -> List[str]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("benchmarks.report: matplotlib is not installed (pip install matplotlib): no plots written")
        return []
    written = []
    rows = list(comparison_rows(latency))
    labels = [f"{case} N={batch}\n{direction}\n{dtype} {device}" for (case, batch, direction, dtype, device), _ in rows]

    # Latency against batch size at MuLA's Hourglass shape.
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for (direction, dtype, device) in sorted({(k[2], k[3], k[4]) for k in latency["ops"] if k[0] == HEADLINE_CASE}):
        for impl in IMPLEMENTATIONS:
            points = sorted((k[1], v["min"]) for k, v in latency["ops"].items()
                            if (k[0], k[2], k[3], k[4], k[5]) == (HEADLINE_CASE, direction, dtype, device, impl))
            if points:
                axes.plot(*zip(*points), marker="o", label=f"{impl} {direction} {dtype} {device}")
    batches = sorted({k[1] for k in latency["ops"] if k[0] == HEADLINE_CASE})
    axes.set_xscale("log")
    axes.set_xticks(batches, [str(b) for b in batches])
    axes.minorticks_off()
    axes.set(yscale="log", xlabel="batch size N", ylabel="time (s, min)",
             title="MuLA Hourglass dynamic conv (C 256, 64x64, 7x7): latency vs batch")
    if batches:
        axes.legend(fontsize=6)
    written.append(_save(figure, out / "latency_vs_batch.png"))

    # Speed-up of mula_ops over each reference, one bar pair per comparison.
    figure, axes = plt.subplots(figsize=(max(6, 1.2 * len(rows)), 4.5))
    width = 0.4
    for offset, reference in zip((-width / 2, width / 2), REFERENCES):
        values = [row[reference]["min"] / row["mula_ops"]["min"] if row[reference] and row["mula_ops"] else 0
                  for _, row in rows]
        axes.bar([i + offset for i in range(len(rows))], values, width, label=f"over {reference}")
    axes.axhline(1, color="black", linewidth=0.8)
    axes.set(yscale="log", ylabel="speed-up of mula_ops (x)", title="Speed-up of mula_ops over each reference")
    axes.set_xticks(range(len(rows)), labels, fontsize=6)
    axes.legend()
    written.append(_save(figure, out / "speedup.png"))

    # Fraction of the measured matmul FLOP/s and of the roofline, every implementation.
    figure, axes = plt.subplots(figsize=(max(6, 1.2 * len(rows)), 4.5))
    width = 0.8 / len(IMPLEMENTATIONS)
    for index, impl in enumerate(IMPLEMENTATIONS):
        values = [roofline(row[impl], latency["machine"]).get("of_roofline", 0) if row[impl] else 0
                  for _, row in rows]
        axes.bar([i + (index - 1) * width for i in range(len(rows))], values, width, label=impl)
    axes.set(yscale="log", ylabel="fraction of roofline", title="Fraction of the roofline")
    axes.set_xticks(range(len(rows)), labels, fontsize=6)
    axes.legend()
    written.append(_save(figure, out / "fraction_of_peak.png"))

    for device in sorted({entry["device"] for entry in mem.get("peaks", []) + mem.get("largest_batch", [])}):
        figure, (left, right, model) = plt.subplots(1, 3, figsize=(14, 4.5))
        ok = [p for p in mem.get("peaks", []) if (p["status"], p["device"], p["dtype"]) == ("ok", device, "float32")]
        keys = sorted({(p["case"], p["batch"]) for p in ok})
        width = 0.8 / len(IMPLEMENTATIONS)
        for index, impl in enumerate(IMPLEMENTATIONS):
            peaks = {(p["case"], p["batch"]): p["peak_bytes"] / MIB for p in ok if p["impl"] == impl}
            left.bar([i + (index - 1) * width for i in range(len(keys))], [peaks.get(key, 0) for key in keys],
                     width, label=impl)
        left.set(yscale="log", ylabel="MiB", title=f"Peak extra memory, forward+backward (float32, {device})")
        left.set_xticks(range(len(keys)), [f"{c} N={b}" for c, b in keys], fontsize=7)
        left.legend()
        entries = [e for e in mem.get("largest_batch", []) if e["device"] == device and e["largest_batch"] is not None]
        right.bar([e["impl"] for e in entries], [e["largest_batch"] for e in entries])
        if entries:
            right.set(ylabel="batch", title=f"Largest batch in {entries[0]['budget_bytes'] / MIB:,.0f} MiB "
                                             f"(Hourglass, float32, {device})")
        entries = [e for e in mem.get("model_largest_batch", [])
                   if e["device"] == device and e["largest_batch"] is not None]
        model.bar([e["impl"] for e in entries], [e["largest_batch"] for e in entries])
        if entries:
            model.set(ylabel="batch", title=f"Largest trainable batch in {entries[0]['budget_bytes'] / MIB:,.0f} MiB\n"
                                            f"({entries[0]['model']}, {device})")
        written.append(_save(figure, out / f"memory_{device}.png"))
    plt.close("all")
    return written


def _save(figure, path: Path) -> str:
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path.name


def render(out: Path) -> Path:
    latency = load_latency(out / "latency.json")
    mem = json.loads((out / "memory.json").read_text()) if (out / "memory.json").exists() else {}
    machine = json.loads((out / "machine.json").read_text())
    markdown = render_markdown(latency, mem, machine, machine.get("command", "python -m benchmarks.report"))
    plots = render_plots(latency, mem, out)
    markdown += "\n" + "".join(f"![{name}]({name})\n" for name in plots)
    report = out / "report.md"
    temporary = report.with_suffix(".md.tmp")
    temporary.write_text(markdown)
    temporary.replace(report)
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Run the mula benchmarks and write a Markdown report with plots.")
    parser.add_argument("--quick", action="store_true",
                        help="MuLA's Hourglass shape only: latency at N=1 and 4, memory at N=16, "
                             "the largest batch in 128 MiB")
    parser.add_argument("--out", type=Path, default=Path("benchmark-results"))
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--budget-mib", type=int, default=None,
                        help="memory budget of the largest-batch search (default: 128 quick, 1024 full)")
    parser.add_argument("--model-budget-mib", type=int, default=None,
                        help="memory budget of the largest-trainable-batch search for the suite's MuLA model "
                             "(default: 8192 in full mode; quick mode searches only when given)")
    parser.add_argument("--skip-memory", action="store_true", help="latency suites only")
    parser.add_argument("--render-only", action="store_true", help="re-render the results saved in --out")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    command = "python -m benchmarks.report" + (" --quick" if args.quick else "") + \
        (f" --threads {args.threads}" if args.threads != 2 else "") + \
        (f" --device {args.device}" if args.device != "auto" else "") + \
        (f" --budget-mib {args.budget_mib}" if args.budget_mib else "") + \
        (f" --model-budget-mib {args.model_budget_mib}" if args.model_budget_mib else "")
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.render_only:
        started = time.perf_counter()
        torch.set_num_threads(args.threads)
        (args.out / "machine.json").write_text(json.dumps(dict(machine_description(args.threads), command=command),
                                                          indent=1))
        run_latency(mode, args.out.resolve(), args.threads, args.device)
        (args.out / "memory.json").unlink(missing_ok=True)  # never render another run's memory figures
        if not args.skip_memory:
            run_memory(mode, args.out, args.threads, args.device, args.budget_mib or MODES[mode]["budget_mib"],
                       args.model_budget_mib or MODES[mode]["model_budget_mib"])
        print(f"benchmarks ran in {time.perf_counter() - started:.0f} s")
    report = render(args.out)
    print(report.read_text())
    print(f"written: {report}")


if __name__ == "__main__":
    main()
