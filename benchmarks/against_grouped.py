"""mula_ops against the grouped trick, one row per case and dtype: median
times of the forward and of forward+backward, their ratio (grouped time over
mula_ops time: above 1 mula_ops is faster) and mula_ops' fraction of the
matrix-product FLOP/s measured in the same run. Reads a pytest-benchmark
file written by the latency suites:

    python -m pytest benchmarks/bench_machine.py benchmarks/bench_ops.py --suite full \\
        --threads 2 -k "not unfold" --benchmark-json=ops.json
    python -m benchmarks.against_grouped ops.json
"""
import argparse
from pathlib import Path

from .cases import DTYPES
from .results import load_latency

PASSES = ("forward", "forward+backward")


def rows(latency):
    ops, limits = latency["ops"], latency["machine"]
    groups = sorted({key[:2] + key[3:5] for key in ops if key[2] in PASSES},
                    key=lambda k: (k[0], k[1], list(DTYPES).index(k[2]) if k[2] in DTYPES else 99, k[3]))
    for case, batch, dtype, device in groups:
        cells, lowest = [], None
        for direction in PASSES:
            ours = ops.get((case, batch, direction, dtype, device, "mula_ops"))
            grouped = ops.get((case, batch, direction, dtype, device, "grouped"))
            if not ours or not grouped:
                cells.append("—")
                continue
            ratio = grouped["median"] / ours["median"]
            lowest = ratio if lowest is None else min(lowest, ratio)
            cells.append(f"{ours['median'] * 1e3:,.2f} / {grouped['median'] * 1e3:,.2f} ms, {ratio:,.2f}x")
        forward = ops.get((case, batch, "forward", dtype, device, "mula_ops"))
        peak = limits.get(device, {}).get("flops_per_s")
        share = f"{forward['flops'] / forward['median'] / peak:.0%}" if forward and peak else "—"
        yield case, batch, dtype, device, cells, share, lowest


def markdown(latency) -> str:
    lines = []
    for device, entry in sorted(latency["machine"].items()):
        lines.append(f"Machine limits on {device} (same run): float32 matrix product "
                     f"{entry.get('flops_per_s', 0) / 1e9:,.0f} GFLOP/s, copy "
                     f"{entry.get('bytes_per_s', 0) / 1e9:,.1f} GB/s.\n")
    lines += ["| case | dtype | forward: mula_ops / grouped | forward+backward: mula_ops / grouped "
              "| mula_ops forward, of matmul |", "|---|---|---:|---:|---:|"]
    for case, batch, dtype, device, cells, share, lowest in rows(latency):
        mark = " **(slower)**" if lowest is not None and lowest < 1 else ""
        lines.append(f"| {case} N={batch}{'' if device == 'cpu' else ' ' + device} | {dtype}{mark} | "
                     + " | ".join(cells) + f" | {share} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("latency", type=Path, help="pytest-benchmark JSON of bench_ops.py (and bench_machine.py)")
    print(markdown(load_latency(parser.parse_args(argv).latency)), end="")


if __name__ == "__main__":
    main()
