"""What a fresh CPU tensor costs before any kernel runs: allocating and
filling tensors of a few sizes (median time, page faults per call), against
copying into memory the process already holds. Run it once plain and once
with each allocator setting to see which suits the machine:

    python -m benchmarks.allocation
    THP_MEM_ALLOC_ENABLE=1 python -m benchmarks.allocation
    MALLOC_MMAP_THRESHOLD_=1000000000 python -m benchmarks.allocation
"""
import argparse
import resource
import statistics
import time

import torch


def median_ms_and_faults(work, rounds: int):
    work()
    times, faults = [], resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / rounds
    return statistics.median(times) * 1e3, faults


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for mib in args.mib:
        count = mib << 18  # float32 elements
        source, target = torch.ones(count), torch.empty(count)
        fresh_ms, fresh_faults = median_ms_and_faults(lambda: torch.empty(count).fill_(1), args.rounds)
        copy_ms, _ = median_ms_and_faults(lambda: target.copy_(source), args.rounds)
        print(f"{mib:5d} MiB: allocate+fill {fresh_ms:8.2f} ms ({fresh_faults:,.0f} page faults), "
              f"copy into held memory {copy_ms:6.2f} ms")


if __name__ == "__main__":
    main()
