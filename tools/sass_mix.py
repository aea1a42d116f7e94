#!/usr/bin/env python
"""The instruction mix of the CUDA kernels, read from the SASS of the built
extension (cuobjdump -sass): per kernel and architecture, the FMAs, the
shared-memory loads and stores with their width in 4-byte words, the global
loads and stores, the shuffles and barriers, and the shared words each FMA
(FFMA or DFMA) costs, with and without counting a shuffle as a word. Static
counts over the whole kernel: a loop body appears once however often it runs.

    python tools/sass_mix.py [path/to/_C.so] [--arch sm_80 sm_90] [--kernel forward_kernel<float]

check_cuda_resources.py prints the same tables (CI prints them in every run)."""
import argparse
import re
import sys
from collections import Counter
from typing import Dict

from cuda_binary import demangle, find_cuobjdump, find_extension, run

_FUNCTION = re.compile(r"^\s*Function : (\S+)")
# "/*0140*/   @!P0 LDS.64 R4, [R2+0x10] ;": the opcode with its modifiers.
_INSTRUCTION = re.compile(r"^\s*/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_.]*)")
_WIDTH_WORDS = {"64": 2, "128": 4}

COLUMNS = ("FFMA", "DFMA", "LDS", "LDS words", "STS words", "LDG", "STG", "SHFL", "BAR",
           "LDS words / FMA", "(LDS words + SHFL) / FMA")


def _words(opcode: str) -> int:
    """4-byte words one lane moves: .64 and .128 are 2 and 4, sub-word and plain accesses 1."""
    return max([_WIDTH_WORDS.get(part, 1) for part in opcode.split(".")[1:]] + [1])


def count(opcodes) -> Dict[str, float]:
    """The mix of a sequence of opcodes (with modifiers, as cuobjdump prints them)."""
    mix = Counter()
    for opcode in opcodes:
        base = opcode.split(".")[0]
        if base in ("FFMA", "DFMA", "SHFL", "BAR"):
            mix[base] += 1
        elif base in ("LDS", "STS"):
            mix[base] += 1
            mix[f"{base} words"] += _words(opcode)
        elif base in ("LDG", "STG"):
            mix[base] += 1
    fmas = mix["FFMA"] + mix["DFMA"]
    mix["LDS words / FMA"] = mix["LDS words"] / fmas if fmas else float("nan")
    mix["(LDS words + SHFL) / FMA"] = (mix["LDS words"] + mix["SHFL"]) / fmas if fmas else float("nan")
    return dict(mix)


def parse_sass(text: str) -> Dict[str, Dict[str, float]]:
    """{mangled kernel name: mix} from one architecture's cuobjdump -sass output."""
    opcodes, function = {}, None
    for line in text.splitlines():
        header = _FUNCTION.match(line)
        if header:
            function = header.group(1)
            opcodes[function] = []
            continue
        instruction = _INSTRUCTION.match(line)
        if function and instruction:
            opcodes[function].append(instruction.group(1))
    return {name: count(ops) for name, ops in opcodes.items()}


def mix_tables(cuobjdump: str, extension: str, archs, kernel_filter: str = "") -> str:
    """Markdown: one table per architecture, one row per mula kernel."""
    out = []
    for arch in archs:
        mixes = {k: v for k, v in parse_sass(run(cuobjdump, "-sass", "-arch", arch, extension)).items()
                 if "mula" in k}
        names = demangle(sorted(mixes))
        rows = sorted((names[k], v) for k, v in mixes.items() if kernel_filter in names[k])
        if not rows:
            out.append(f"\nNo SASS for {arch}.\n")
            continue
        out.append(f"\nInstruction mix on {arch} (static counts, cuobjdump -sass):\n")
        out.append("| kernel | " + " | ".join(COLUMNS) + " |")
        out.append("|---|" + "---:|" * len(COLUMNS))
        for name, mix in rows:
            cells = [f"{mix.get(c, 0):.2f}" if "/" in c else str(int(mix.get(c, 0))) for c in COLUMNS]
            out.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("extension", nargs="?", help="the built extension (default: mula_ops/_C*.so)")
    parser.add_argument("--arch", nargs="*", default=["sm_80", "sm_90"])
    parser.add_argument("--kernel", default="", help="only kernels whose name contains this")
    args = parser.parse_args()
    print(mix_tables(find_cuobjdump(), find_extension(args.extension), args.arch, args.kernel))
    return 0


if __name__ == "__main__":
    sys.exit(main())
