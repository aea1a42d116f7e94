"""Loads the saved benchmark results (latency.json, memory.json,
machine.json) and derives what the report shows from them."""
import json
import math
from pathlib import Path
from typing import Dict

MIB = 1 << 20
HEADLINE_CASE = "hourglass"
HEADLINE_BATCH = 4
# The training step's memory is measured at this batch; it also seeds the search.
MODEL_PEAK_BATCH = 2


def load(out: Path) -> Dict:
    """The results saved in the folder `out`: latency (load_latency), memory, machine."""
    memory_path = out / "memory.json"
    return {"latency": load_latency(out / "latency.json"),
            "memory": json.loads(memory_path.read_text()) if memory_path.exists() else {},
            "machine": json.loads((out / "machine.json").read_text())}


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
