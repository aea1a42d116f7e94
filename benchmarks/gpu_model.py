"""The GPU cost model of the CUDA kernels: the very kernel source run on the
CPU by the CUDA emulator under its cost model (csrc/emulator/cost_model.h),
which counts per warp-level request the global sectors, the shared-memory
wavefronts and bank conflicts, and per thread the FMAs and adds; from those a
predicted time per kernel launch on A100, H100 and H200 (gpu_roofline.GPUS),
set against the floor of the convolution itself.

    python -m benchmarks.gpu_model --out DIR     # DIR/gpu_model.md, DIR/gpu_model.json

Builds csrc/emulator/gpu_cost_model.cpp with the host C++ compiler into
build/gpu_model/ (about 15 s, again only when a source changed). Whole GPU
launches at these shapes are too slow to emulate thread by thread, so only a
share of each grid runs: whole groups of channels (a plane for depthwise), so
that every profiled block reads and writes memory no unprofiled one does,
and the counts are scaled by grid blocks / profiled blocks
(tests/test_gpu_cost_model.py checks that the scaled counts equal a full run)."""
import argparse
import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Sequence

import torch

from .cases import ConvCase
from .gpu_roofline import FLOOR_CASES, GPU, GPUS, floor_seconds

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
SOURCES = [CSRC / "emulator" / "gpu_cost_model.cpp", CSRC / "emulator" / "emulated_kernels.cpp"]
PASSES = ("forward", "backward")
# Work profiled per launch, in blocks x the channels each block loops over:
# whole planes and tiles, yet few enough that the report takes minutes (the
# fused backward's shuffles and barriers make its blocks the slowest to emulate).
TARGET_WORK = {"forward": 512, "backward": 64}
# Threads per SM the registers allow every kernel: __launch_bounds__(256, 2)
# caps them at 128 registers, so 2 blocks of 256 fit a 64K-register file.
RESIDENT_THREADS_PER_SM = 512
MAX_BLOCKS_PER_SM = 32


def build_cost_model(build_dir: Path = ROOT / "build" / "gpu_model") -> Path:
    """The cost-model executable, rebuilt when any source it includes is newer."""
    binary = build_dir / "gpu_cost_model"
    inputs = [*SOURCES, *(CSRC / "cuda").glob("*"), *(CSRC / "emulator").glob("*.h"),
              CSRC / "dynamic_conv_problem.h", CSRC / "half_rounding.h"]
    if binary.exists() and binary.stat().st_mtime >= max(p.stat().st_mtime for p in inputs):
        return binary
    build_dir.mkdir(parents=True, exist_ok=True)
    compiler = os.environ.get("CXX", "c++")
    subprocess.run([compiler, "-std=c++20", "-O2", "-DMULA_CUDA_EMULATION", "-Wno-unknown-pragmas",
                    "-pthread", "-rdynamic", *map(str, SOURCES), "-o", str(binary)], check=True)
    return binary


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def profiled_fraction(case: ConvCase, direction: str) -> float:
    """Whole groups of planes (a group's blocks touch memory no other group
    does), about TARGET_WORK's worth."""
    if direction == "forward":  # a block per output plane and tile, looping over its group's inputs
        plane_channels, looped = case.out_channels, case.in_channels // case.groups
        height, width = case.output_size()
    else:  # a block per input plane and tile, looping over its group's outputs
        plane_channels, looped = case.in_channels, case.out_channels // case.groups
        height, width = case.height, case.width
    group = plane_channels // case.groups
    tiles = -(-height // 32) * -(-width // 32)
    groups = max(1, TARGET_WORK[direction] // (group * tiles * looped))
    return min(1.0, groups * group / (case.batch * plane_channels))


def run_cost_model(binary: Path, case: ConvCase, dtype: torch.dtype, direction: str,
                   fraction: float) -> List[Dict]:
    """The launches of one pass, their counts as the emulator reports them."""
    arguments = {"batch": case.batch, "in-channels": case.in_channels, "out-channels": case.out_channels,
                 "groups": case.groups, "height": case.height, "width": case.width, "kernel": case.kernel,
                 "stride": case.stride, "padding": case.padding, "dilation": case.dilation,
                 "dtype": dtype_name(dtype), "pass": direction, "fraction": repr(fraction)}
    command = [str(binary)] + [item for name, value in arguments.items() for item in (f"--{name}", str(value))]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def scaled(launch: Dict) -> Dict:
    """The launch's counts over its whole grid: every count times grid / profiled blocks."""
    scale = launch["grid_blocks"] / launch["profiled_blocks"]
    out = {}
    for name, value in launch.items():
        if isinstance(value, dict):
            out[name] = {k: v * scale for k, v in value.items()}
        elif name in ("kernel", "grid_blocks", "profiled_blocks", "threads_per_block", "shared_bytes"):
            out[name] = value
        else:
            out[name] = value * scale
    return out


def resident_blocks(counts: Dict, gpu: GPU) -> int:
    """Blocks of the launch one SM holds at once, as its registers (at the
    launch bounds' cap), its shared memory and the hardware's block limit allow."""
    by_registers = max(1, RESIDENT_THREADS_PER_SM // counts["threads_per_block"])
    by_shared = gpu.shared_bytes_per_sm // max(1, counts["shared_bytes"])
    return max(1, min(by_registers, by_shared, MAX_BLOCKS_PER_SM))


def predicted_seconds(counts: Dict, gpu: GPU) -> Dict[str, float]:
    """The launch's time on `gpu`: the slowest of DRAM (its distinct bytes over
    the bandwidth), the FP32 and FP64 pipes (instructions over their rates,
    an FMA being 2 FLOPs) and the shared-memory pipe (wavefronts and shuffles,
    one per SM and clock), stretched by the launch's last partial wave
    (resident_blocks per SM)."""
    shared_wavefronts = (counts["shared_load"]["wavefronts"] + counts["shared_store"]["wavefronts"]
                         + counts["shuffle_instructions"])
    limits = {
        "dram": counts["distinct_global_bytes"] / gpu.dram_bytes_per_s,
        "fp32": (counts["fp32_fma"] + counts["fp32_add"]) / (gpu.fp32_flops_per_s / 2),
        "fp64": (counts["fp64_fma"] + counts["fp64_add"]) / (gpu.fp64_flops_per_s / 2),
        "shared": shared_wavefronts / (gpu.sms * gpu.boost_clock_hz),
    }
    slots = gpu.sms * resident_blocks(counts, gpu)
    waves = counts["grid_blocks"] / slots
    bound = max(limits, key=limits.get)
    return {"seconds": limits[bound] * (-(-counts["grid_blocks"] // slots) / waves), "bound": bound, **limits}


def row_fields(case: str, direction: str, dtype: str, counts: Dict, min_bytes: float,
               floor_us: Dict[str, float]) -> Dict:
    """One report row: a launch's scaled counts, the ratios derived from them and its predictions."""
    c = counts
    fmas = c["fp32_fma"] + c["fp64_fma"]
    shared_requests = c["shared_load"]["requests"] + c["shared_store"]["requests"]
    conflicts = sum(c[s]["wavefronts"] - c[s]["ideal_wavefronts"] for s in ("shared_load", "shared_store"))
    predictions = {name: predicted_seconds(c, gpu) for name, gpu in GPUS.items()}

    def ratio(a, b):
        return a / b if b else None
    return {
        "case": case, "pass": direction, "kernel": c["kernel"], "dtype": dtype,
        "grid_blocks": c["grid_blocks"], "profiled_blocks": c["profiled_blocks"],
        "sectors_per_load_request": ratio(c["global_load"]["sectors"], c["global_load"]["requests"]),
        "sectors_per_store_request": ratio(c["global_store"]["sectors"], c["global_store"]["requests"]),
        # 1 when every request touches only the sectors its words need (aligned, contiguous).
        "load_sectors_over_ideal": ratio(c["global_load"]["sectors"], c["global_load"]["ideal_sectors"]),
        "store_sectors_over_ideal": ratio(c["global_store"]["sectors"], c["global_store"]["ideal_sectors"]),
        "bank_conflicts_per_request": ratio(conflicts, shared_requests),
        "shared_words_per_fma": ratio(c["shared_load"]["words"], fmas),
        "shared_and_shuffle_words_per_fma": ratio(c["shared_load"]["words"] + 32 * c["shuffle_instructions"],
                                                  fmas),
        "dram_bytes": c["distinct_global_bytes"], "min_bytes": min_bytes,
        "flops": 2 * fmas + c["fp32_add"] + c["fp64_add"],
        "predicted_us": {n: p["seconds"] * 1e6 for n, p in predictions.items()},
        "bound": {n: p["bound"] for n, p in predictions.items()},
        "floor_us": floor_us,
        "counts": c,
    }


def model_rows(binary: Path, cases: Sequence = FLOOR_CASES, workers: int = 1) -> List[Dict]:
    """The report rows of every case and pass, in that order; the passes run
    in `workers` emulator processes at once."""
    passes = [(case, dtype, direction) for case, dtype in cases for direction in PASSES]

    def rows_of(job) -> List[Dict]:
        case, dtype, direction = job
        floors = {n: floor_seconds(case, dtype, direction, gpu) for n, gpu in GPUS.items()}
        floor_us = {n: f["floor_s"] * 1e6 for n, f in floors.items()}
        launches = run_cost_model(binary, case, dtype, direction, profiled_fraction(case, direction))
        return [row_fields(case.label, direction, dtype_name(dtype), scaled(launch), floors["H100"]["bytes"],
                           floor_us) for launch in launches]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [row for rows in pool.map(rows_of, passes) for row in rows]


def pass_totals(rows: List[Dict]) -> List[Dict]:
    """Per (case, dtype, pass): the predicted time of its launches together, the floor and their ratio."""
    totals = {}
    for row in rows:
        key = (row["case"], row["dtype"], row["pass"])
        total = totals.setdefault(key, {"case": row["case"], "dtype": row["dtype"], "pass": row["pass"],
                                        "dram_bytes": 0, "min_bytes": row["min_bytes"], "flops": 0,
                                        "predicted_us": dict.fromkeys(GPUS, 0.0), "floor_us": row["floor_us"]})
        total["dram_bytes"] += row["dram_bytes"]
        total["flops"] += row["flops"]
        for name in GPUS:
            total["predicted_us"][name] += row["predicted_us"][name]
    for total in totals.values():
        total["ratio"] = {n: total["predicted_us"][n] / total["floor_us"][n] for n in GPUS}
    return list(totals.values())


def _number(value, digits=2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render_markdown(rows: List[Dict], totals: List[Dict], command: str) -> str:
    gpus = list(GPUS)
    lines = [f"GPU cost model of the CUDA kernels (`{command}`): counts from the CUDA emulator, "
             "scaled from the profiled blocks to the whole grid.", "",
             "| case | dtype | pass | kernel | sectors / load req | sectors / store req | load, store sectors "
             "/ ideal | bank conflicts / shared req | shared words / FMA | DRAM MB (model) | GFLOP | "
             + " | ".join(f"{g} us" for g in gpus) + " |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(gpus)]
    for r in rows:
        lines.append(f"| {r['case']} | {r['dtype']} | {r['pass']} | `{r['kernel']}` | "
                     f"{_number(r['sectors_per_load_request'])} | {_number(r['sectors_per_store_request'])} | "
                     f"{_number(r['load_sectors_over_ideal'])}, {_number(r['store_sectors_over_ideal'])} | "
                     f"{_number(r['bank_conflicts_per_request'])} | {_number(r['shared_words_per_fma'])} | "
                     f"{r['dram_bytes'] / 1e6:,.1f} | {r['flops'] / 1e9:,.2f} | "
                     + " | ".join(f"{r['predicted_us'][g]:,.1f} ({r['bound'][g]})" for g in gpus) + " |")
    lines += ["", "Each pass against the floor of the convolution itself (minimal bytes: inputs read once, "
              "outputs written once; FLOPs: 2 per multiply-add):", "",
              "| case | dtype | pass | DRAM MB (model) | minimal MB | GFLOP | "
              + " | ".join(f"{g} predicted / floor us" for g in gpus) + " | ratio H100 |",
              "|---|---|---|---:|---:|---:|" + "---:|" * (len(gpus) + 1)]
    for t in totals:
        lines.append(f"| {t['case']} | {t['dtype']} | {t['pass']} | {t['dram_bytes'] / 1e6:,.1f} | "
                     f"{t['min_bytes'] / 1e6:,.1f} | {t['flops'] / 1e9:,.2f} | "
                     + " | ".join(f"{t['predicted_us'][g]:,.1f} / {t['floor_us'][g]:,.1f}" for g in gpus)
                     + f" | {t['ratio']['H100']:.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu-model"))
    parser.add_argument("--workers", type=int, default=os.cpu_count(),
                        help="emulator processes at once (default: one per CPU core)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    binary = build_cost_model()
    rows = model_rows(binary, workers=args.workers)
    totals = pass_totals(rows)
    command = "python -m benchmarks.gpu_model"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_model.json").write_text(json.dumps({"command": command, "rows": rows, "passes": totals,
                                                          "gpus": {n: vars(g) for n, g in GPUS.items()}},
                                                          indent=1))
    markdown = render_markdown(rows, totals, command)
    (args.out / "gpu_model.md").write_text(markdown)
    print(markdown)
    print(f"gpu_model ran in {time.perf_counter() - started:.0f} s; wrote {args.out}/gpu_model.md and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
