"""The cost model's figures measured by Nsight Compute: for each launch of
mula_ops at the report's shapes, the hardware counters of the quantities the
model predicts (global sectors per request, shared bank conflicts, DRAM
bytes, thread FFMAs, duration), set beside the model's own.

Used by benchmarks.gpu_validate on a GPU machine with `ncu` on the PATH. One
ncu run profiles every case: the target (`python -m benchmarks.ncu_counters
target`) brackets each pass with cudaProfilerStart/Stop, so only the pass's
own launches are profiled (not the set-up's), in the order the model lists
them (forward, then backward, per case)."""
import csv
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Sequence

# ncu metric -> the name it has in the report (base units: bytes, nanoseconds).
METRICS = {
    "gpu__time_duration.sum": "duration_ns",
    "dram__bytes_read.sum": "dram_read_bytes",
    "dram__bytes_write.sum": "dram_write_bytes",
    "l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum": "global_load_requests",
    "l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum": "global_load_sectors",
    "l1tex__t_requests_pipe_lsu_mem_global_op_st.sum": "global_store_requests",
    "l1tex__t_sectors_pipe_lsu_mem_global_op_st.sum": "global_store_sectors",
    "smsp__inst_executed_op_shared_ld.sum": "shared_load_requests",
    "smsp__inst_executed_op_shared_st.sum": "shared_store_requests",
    "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum": "shared_load_bank_conflicts",
    "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum": "shared_store_bank_conflicts",
    "smsp__sass_thread_inst_executed_op_ffma_pred_on.sum": "thread_ffma",
    "launch__registers_per_thread": "registers_per_thread",
}
# Launches of mula_ops' own kernels only (not torch's fills and copies).
KERNEL_FILTER = "regex:mula::cuda::"


def ncu_command(python: str = sys.executable) -> List[str]:
    return ["ncu", "--profile-from-start", "off", "--kernel-name-base", "demangled",
            "--kernel-name", KERNEL_FILTER, "--print-kernel-base", "demangled", "--clock-control", "none",
            "--print-units", "base", "--csv", "--metrics", ",".join(METRICS),
            python, "-m", "benchmarks.ncu_counters", "target"]


def kernel_base_name(name: str) -> str:
    """'void mula::cuda::forward_kernel<float, 7>(mula::cuda::ConvShape, ...)'
    and the model's 'forward_kernel<float, 7>' both -> 'forward_kernel' (the
    template arguments differ between the two: the emulator's half types are
    not CUDA's)."""
    name = name.strip().removeprefix("void ")
    name = name.split("<", 1)[0].split("(", 1)[0]
    return name.rsplit("::", 1)[-1]


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def parse_ncu_csv(text: str) -> List[Dict]:
    """ncu --csv output -> one dict per profiled launch, in launch order:
    `kernel` and the counters under the names of METRICS. Lines ncu writes
    about itself (==PROF==, the target's own output) are skipped."""
    rows = [line for line in text.splitlines() if line.startswith('"')]
    launches: Dict[str, Dict] = {}
    for record in csv.DictReader(rows):
        metric = METRICS.get(record["Metric Name"])
        launch = launches.setdefault(record["ID"], {"kernel": record["Kernel Name"]})
        if metric is not None:
            launch[metric] = _number(record["Metric Value"])
    missing = [name for launch in launches.values() for name in METRICS.values() if name not in launch]
    if missing:
        raise ValueError(f"ncu_counters: the ncu report lacks the metrics {sorted(set(missing))}")
    return [launches[key] for key in sorted(launches, key=int)]


def _ratio(a: float, b: float):
    return a / b if b else None


def compare(model_rows: Sequence[Dict], measured: Sequence[Dict], gpu: str) -> List[Dict]:
    """The model's launches and the measured ones, paired in order, one row
    each with the model's and the measured value of every compared figure.
    A launch sequence that differs from the model's is an error, not a guess."""
    if len(model_rows) != len(measured):
        raise ValueError(f"ncu_counters: ncu profiled {len(measured)} launches, the model has "
                         f"{len(model_rows)}: the launch sequences differ")
    rows = []
    for model, counters in zip(model_rows, measured):
        if kernel_base_name(model["kernel"]) != kernel_base_name(counters["kernel"]):
            raise ValueError(f"ncu_counters: launch of {counters['kernel']!r} where the model has "
                             f"{model['kernel']!r} ({model['case']}, {model['pass']})")
        shared_requests = counters["shared_load_requests"] + counters["shared_store_requests"]
        conflicts = counters["shared_load_bank_conflicts"] + counters["shared_store_bank_conflicts"]
        rows.append({
            "case": model["case"], "dtype": model["dtype"], "pass": model["pass"], "kernel": model["kernel"],
            "sectors_per_load_request": {
                "model": model["sectors_per_load_request"],
                "measured": _ratio(counters["global_load_sectors"], counters["global_load_requests"])},
            "sectors_per_store_request": {
                "model": model["sectors_per_store_request"],
                "measured": _ratio(counters["global_store_sectors"], counters["global_store_requests"])},
            "bank_conflicts_per_request": {"model": model["bank_conflicts_per_request"],
                                           "measured": _ratio(conflicts, shared_requests)},
            "dram_bytes": {"model": model["dram_bytes"],
                           "measured": counters["dram_read_bytes"] + counters["dram_write_bytes"]},
            "thread_ffma": {"model": model["counts"]["fp32_fma"], "measured": counters["thread_ffma"]},
            "duration_us": {"model": model["predicted_us"].get(gpu), "measured": counters["duration_ns"] / 1e3},
            "registers_per_thread": counters["registers_per_thread"],
        })
    return rows


def _cell(pair: Dict, scale: float = 1.0, digits: int = 2) -> str:
    def number(value):
        return "-" if value is None else f"{value * scale:,.{digits}f}"
    return f"{number(pair['model'])} / {number(pair['measured'])}"


def render_comparison(rows: Sequence[Dict], gpu: str) -> str:
    lines = [f"Cost model / Nsight Compute, per launch of mula_ops (model predictions for {gpu or 'no known GPU'}):",
             "", "| case | dtype | pass | kernel | sectors / load req | sectors / store req | "
             "bank conflicts / shared req | DRAM MB | thread FFMA (M) | us | registers |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['dtype']} | {r['pass']} | `{r['kernel']}` | "
                     f"{_cell(r['sectors_per_load_request'])} | {_cell(r['sectors_per_store_request'])} | "
                     f"{_cell(r['bank_conflicts_per_request'])} | {_cell(r['dram_bytes'], 1e-6, 1)} | "
                     f"{_cell(r['thread_ffma'], 1e-6, 1)} | {_cell(r['duration_us'], 1, 1)} | "
                     f"{r['registers_per_thread']:.0f} |")
    return "\n".join(lines) + "\n"


def measure(out_dir: Path) -> List[Dict]:
    """Runs ncu over the target; its raw output is kept in out_dir/ncu.csv."""
    result = subprocess.run(ncu_command(), capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    (out_dir / "ncu.csv").write_text(result.stdout)
    (out_dir / "ncu.log").write_text(result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"ncu_counters: ncu exited with {result.returncode}; see {out_dir / 'ncu.log'}")
    return parse_ncu_csv(result.stdout)


def run_target() -> None:
    """The profiled program: each report case's mula_ops passes, each
    bracketed by cudaProfilerStart/Stop."""
    import torch

    from .gpu_model import PASSES
    from .gpu_roofline import FLOOR_CASES
    from .passes import make_pass
    for case, dtype in FLOOR_CASES:
        for direction in PASSES:
            work = make_pass("mula_ops", case, dtype, "cuda", direction)
            torch.cuda.synchronize()
            torch.cuda.profiler.start()
            work()
            torch.cuda.profiler.stop()


if __name__ == "__main__":
    if sys.argv[1:] != ["target"]:
        raise SystemExit("usage: python -m benchmarks.ncu_counters target (run by benchmarks.gpu_validate under ncu)")
    run_target()
