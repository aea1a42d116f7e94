#!/usr/bin/env python
"""Checks the CUDA kernels compiled into the built extension (mula_ops/_C*.so):
lists the architectures it holds code for (cuobjdump --list-elf), fails when a
required one is missing or when any kernel uses local memory (register spills
or a stack frame: LOCAL or STACK > 0 in cuobjdump --dump-resource-usage), and
prints registers per kernel and architecture as a Markdown table, and the
instruction mix of every kernel on the required architectures (sass_mix.py).

    python tools/check_cuda_resources.py [path/to/_C.so] [--require sm_80 sm_90]

cuobjdump is taken from $CUOBJDUMP, $PATH, $CUDA_HOME/bin, the nvidia-cuda-cuobjdump
wheel, or the copy bundled with triton (installed with CUDA builds of torch).
Exit status: 0 all good, 1 a check failed, 2 nothing to check (no CUDA code)."""
import argparse
import re
import sys
from collections import defaultdict

from cuda_binary import demangle, find_cuobjdump, find_extension, run
from sass_mix import mix_tables


def parse_resource_usage(text):
    """{(kernel, arch): {'REG': int, 'STACK': int, 'SHARED': int, 'LOCAL': int}}"""
    usage, arch, function = {}, None, None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("arch = "):
            arch = line.split("=", 1)[1].strip()
        elif line.startswith("Function "):
            function = line[len("Function "):].rstrip(":")
        elif function and line.startswith("REG:"):
            fields = dict(re.findall(r"(\w+(?:\[\d+\])?):(\d+)", line))
            usage[(function, arch)] = {k: int(fields.get(k, 0)) for k in ("REG", "STACK", "SHARED", "LOCAL")}
            function = None
    return usage


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("extension", nargs="?", help="the built extension (default: mula_ops/_C*.so)")
    parser.add_argument("--require", nargs="*", default=["sm_80", "sm_90"],
                        help="architectures that must have code (default: sm_80 sm_90)")
    args = parser.parse_args()
    cuobjdump, extension = find_cuobjdump(), find_extension(args.extension)

    elves = re.findall(r"\.(sm_\d+a?)\.cubin", run(cuobjdump, "--list-elf", extension))
    ptx = re.findall(r"\.(sm_\d+a?)\.ptx", run(cuobjdump, "--list-ptx", extension))
    print(f"{extension}\n  SASS for: {', '.join(sorted(set(elves))) or 'none'}\n"
          f"  PTX for:  {', '.join(sorted(set(ptx))) or 'none'}")
    if not elves:
        print("no CUDA device code in the extension (a CPU-only build?)")
        return 2

    usage = parse_resource_usage(run(cuobjdump, "--dump-resource-usage", extension))
    usage = {key: value for key, value in usage.items() if "mula" in key[0]}
    names = demangle(sorted({kernel for kernel, _ in usage}))
    archs = sorted({arch for _, arch in usage}, key=lambda a: int(re.sub(r"\D", "", a)))

    failures = [f"no SASS for {arch}" for arch in args.require if arch not in elves]
    table = defaultdict(dict)
    for (kernel, arch), resources in usage.items():
        table[names[kernel]][arch] = resources
        if resources["LOCAL"] or resources["STACK"]:
            failures.append(f"{names[kernel]} on {arch} uses local memory: "
                            f"LOCAL={resources['LOCAL']} STACK={resources['STACK']} (register spills)")

    print(f"\nRegisters per thread (block of 256 threads; shared memory is dynamic, sized per launch; "
          f"{len(table)} kernels, no local memory unless listed below):\n")
    print("| kernel | " + " | ".join(archs) + " |")
    print("|---|" + "---|" * len(archs))
    for kernel in sorted(table):
        print(f"| {kernel} | " + " | ".join(str(table[kernel].get(a, {}).get("REG", "-")) for a in archs) + " |")
    print(mix_tables(cuobjdump, extension, [arch for arch in args.require if arch in elves]))
    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures))
        return 1
    print(f"\nOK: SASS for {', '.join(args.require)}; no kernel uses local memory.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
