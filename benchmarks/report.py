"""Run the benchmark suites and turn their results into a Markdown report and
PNG plots: running in run_suites.py, loading in results.py, rendering in
render.py.

    python -m benchmarks.report --quick          # < 3 minutes on a 2-core CPU
    python -m benchmarks.report                  # full mode
    python -m benchmarks.report --render-only    # re-render saved results

Writes into --out (default benchmark-results/): latency.json
(pytest-benchmark), memory.json, machine.json, report.md and *.png.
"""
import argparse
import json
import time
from pathlib import Path

import torch

from mula_model.data import atomic_write

from .render import render_report
from .run_suites import MODES, machine_description, run_latency, run_memory


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
        machine = dict(machine_description(args.threads), command=command)
        atomic_write(args.out / "machine.json", json.dumps(machine, indent=1).encode())
        run_latency(mode, args.out.resolve(), args.threads, args.device)
        (args.out / "memory.json").unlink(missing_ok=True)  # never render another run's memory figures
        if not args.skip_memory:
            run_memory(mode, args.out, args.threads, args.device, args.budget_mib or MODES[mode]["budget_mib"],
                       args.model_budget_mib or MODES[mode]["model_budget_mib"])
        print(f"benchmarks ran in {time.perf_counter() - started:.0f} s")
    report = render_report(args.out)
    print(report.read_text())
    print(f"written: {report}")


if __name__ == "__main__":
    main()
