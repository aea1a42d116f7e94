"""The machine's own limits, measured in the same run as the operator so that
every timing can be shown as a fraction of them: a large float32 matrix
product (FLOP/s) and a large copy (bytes/s, read + write)."""
import torch

from benchmarks.passes import synchronize

MATMUL_SIZE = 2048
COPY_BYTES = 256 << 20


def test_matmul_flops(benchmark, device):
    a = torch.randn(MATMUL_SIZE, MATMUL_SIZE, device=device)
    b = torch.randn(MATMUL_SIZE, MATMUL_SIZE, device=device)
    out = torch.empty_like(a)

    def run():
        torch.mm(a, b, out=out)
        synchronize(device)

    run()
    benchmark.group = f"machine {device}"
    benchmark.extra_info.update(kind="machine", metric="matmul", device=device, dtype="float32",
                                threads=torch.get_num_threads(), flops=2 * MATMUL_SIZE ** 3)
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
