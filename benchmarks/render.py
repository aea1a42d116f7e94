"""Renders loaded benchmark results (results.py) as the Markdown report and
its PNG plots."""
import math
from pathlib import Path
from typing import Dict, List, Optional

from mula_model.data import atomic_write

from .cases import DIRECTIONS, IMPLEMENTATIONS, REFERENCES
from .results import HEADLINE_BATCH, HEADLINE_CASE, MIB, load, roofline


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


def render_report(out: Path) -> Path:
    """report.md (and the plots beside it) from the results saved in `out`."""
    results = load(out)
    latency, mem, machine = results["latency"], results["memory"], results["machine"]
    markdown = render_markdown(latency, mem, machine, machine.get("command", "python -m benchmarks.report"))
    plots = render_plots(latency, mem, out)
    markdown += "\n" + "".join(f"![{name}]({name})\n" for name in plots)
    report = out / "report.md"
    atomic_write(report, markdown.encode())
    return report
