"""The machine's own limits, measured in the same run as the operator so that
every timing can be shown as a fraction of them: a large float32 matrix
product (FLOP/s) and a large copy (bytes/s, read + write)."""
import torch

from benchmarks.passes import synchronize

# Large enough to reach the peak, small enough to time in well under a second.
MATMUL_SIZE = {"cpu": 2048, "cuda": 8192}
COPY_BYTES = 256 << 20


def test_matmul_flops(benchmark, device):
    size = MATMUL_SIZE[torch.device(device).type]
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    out = torch.empty_like(a)

    def run():
        torch.mm(a, b, out=out)
        synchronize(device)

    run()
    benchmark.group = f"machine {device}"
    benchmark.extra_info.update(kind="machine", metric="matmul", device=device, dtype="float32",
                                threads=torch.get_num_threads(), flops=2 * size ** 3)
    benchmark(run)


def test_copy_bandwidth(benchmark, device):
    source = torch.ones(COPY_BYTES // 4, device=device)
    target = torch.empty_like(source)

    def run():
        target.copy_(source)
        synchronize(device)

    run()
    benchmark.group = f"machine {device}"
    benchmark.extra_info.update(kind="machine", metric="copy", device=device, dtype="float32",
                                threads=torch.get_num_threads(), bytes=2 * COPY_BYTES)
    benchmark(run)
