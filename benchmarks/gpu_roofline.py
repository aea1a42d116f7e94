"""The physical floor of the convolution on data-centre GPUs: the published
limits of A100, H100 and H200 (SXM) and, per case and pass, the time the work
needs at the slower of the DRAM and the arithmetic limit. The floor is what no
kernel can beat; a cost model of the kernels is judged against it."""
from dataclasses import dataclass
from typing import Dict

import torch

from .cases import ConvCase, flops, minimal_bytes, mula_hourglass, mula_vgg


@dataclass(frozen=True)
class GPU:
    name: str
    dram_bytes_per_s: float
    fp32_flops_per_s: float  # non-tensor-core FFMA rate (2 FLOPs per FMA) at the boost clock
    fp64_flops_per_s: float
    sms: int
    boost_clock_hz: float
    # 32 banks of 4 bytes: one 128-byte shared-memory wavefront per SM and clock.
    shared_bytes_per_clock_per_sm: int = 128
    # The most shared memory an SM gives its blocks (CUDA C++ Programming Guide,
    # technical specifications per compute capability: 8.0 164 KB, 9.0 228 KB).
    shared_bytes_per_sm: int = 228 * 1024
    source: str = ""


GPUS = {
    "A100": GPU("A100 SXM4 80GB", 2.039e12, 19.5e12, 9.7e12, 108, 1.410e9, shared_bytes_per_sm=164 * 1024,
                source="NVIDIA A100 Tensor Core GPU datasheet (2021); NVIDIA A100 architecture whitepaper"),
    "H100": GPU("H100 SXM5 80GB", 3.35e12, 67e12, 34e12, 132, 1.980e9,
                source="NVIDIA H100 Tensor Core GPU datasheet (2023); NVIDIA H100 architecture whitepaper"),
    "H200": GPU("H200 SXM 141GB", 4.8e12, 67e12, 34e12, 132, 1.980e9,
                source="NVIDIA H200 Tensor Core GPU datasheet (2024)"),
}


def floor_seconds(case: ConvCase, dtype: torch.dtype, direction: str, gpu: GPU) -> Dict[str, float]:
    """The floor of one pass and what sets it: the minimal bytes over DRAM
    bandwidth, the FLOPs over the arithmetic rate (float64 at its own rate,
    the other dtypes at the FP32 rate, since they accumulate in float32)."""
    work, data = flops(case, direction), minimal_bytes(case, dtype, direction)
    rate = gpu.fp64_flops_per_s if dtype == torch.float64 else gpu.fp32_flops_per_s
    memory, arithmetic = data / gpu.dram_bytes_per_s, work / rate
    return {"bytes": data, "flops": work, "memory_s": memory, "arithmetic_s": arithmetic,
            "floor_s": max(memory, arithmetic), "bound": "memory" if memory >= arithmetic else "arithmetic"}


# The shapes the GPU figures are given for: MuLA's two layers at N=16 and the
# variants the kernels must also serve.
FLOOR_CASES = [
    (mula_hourglass(16), torch.float32), (mula_hourglass(16), torch.bfloat16), (mula_vgg(16), torch.float32),
    (ConvCase("stride2", 16, 256, 256, 64, 64, 7, stride=2, padding=3, groups=256), torch.float32),
    (ConvCase("dilation2", 16, 256, 256, 64, 64, 7, padding=6, dilation=2, groups=256), torch.float32),
    (ConvCase("groups4", 16, 64, 128, 32, 32, 3, padding=1, groups=4), torch.float32),
]


def floor_table() -> str:
    """Markdown: per case and pass, the minimal bytes, the FLOPs and the floor on each GPU."""
    names = list(GPUS)
    lines = ["| case | dtype | pass | minimal bytes | FLOPs | " + " | ".join(f"floor {n}" for n in names) + " |",
             "|---|---|---|---:|---:|" + "---:|" * len(names)]
    for case, dtype in FLOOR_CASES:
        for direction in ("forward", "backward"):
            floors = [floor_seconds(case, dtype, direction, GPUS[n]) for n in names]
            cells = [f"{f['floor_s'] * 1e6:,.1f} us ({f['bound'][:3]})" for f in floors]
            lines.append(f"| {case.label} | {str(dtype).removeprefix('torch.')} | {direction} | "
                         f"{floors[0]['bytes'] / 1e6:,.1f} MB | {floors[0]['flops'] / 1e9:,.2f} G | "
                         + " | ".join(cells) + " |")
    sources = "; ".join(f"{gpu.name}: {gpu.source}" for gpu in GPUS.values())
    return "\n".join(lines) + f"\n\n(mem: DRAM-bound, ari: arithmetic-bound. Limits from {sources}.)"


if __name__ == "__main__":
    print(floor_table())
