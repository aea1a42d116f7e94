"""The CPU kernels' own checks: every instruction-set build (chosen at run
time, forced here with MULA_CPU_ISA, which the operator reads at every call)
against the float64 reference, and the exact rounding of the half-precision
types.

The operator's full matrix (shapes, gradcheck, opcheck, compile, determinism,
bad input) is in test_dynamic_conv.py and runs on the build this CPU picks."""
import itertools
import json
import os
import subprocess
import sys

import pytest
import torch

import mula_ops
from mula_ops import reference

# (kernel, stride, dilation, padding, groups): the register-blocked paths
# (square 1/3/5/7; any dilation; at stride > 1 the forward over column
# phases and the backward over the spread grad_output) with row and vector
# tails, and the general loops (non-square; 70 columns: rows of more than
# four vectors in every build), grouped, padding beyond the span;
# the 1x1 stride-1 unpadded ones that are not depthwise as a matrix product
# of planes, with pixels beyond the last whole vector.
# Grouped cases have 12 input and 26 output channels (6 and 13 = 6 + 4 + 2 + 1
# per group at groups 2), so the channel-blocked tiles and the weight
# gradient's blocks of grad_output and input planes run in blocks of every
# size each build has.
ISA_CASES = [(1, 1, 1, 0, "dw"), (3, 1, 1, 1, "dw"), (5, 1, 1, 2, "dw"), (7, 1, 1, 3, "dw"),
             (7, 1, 1, 0, "dw"), (3, 1, 1, 4, "dw"), (3, 1, 1, 1, 2), ((2, 3), 1, 1, 1, "dw"),
             (3, 2, 1, 1, "dw"), (3, 1, 2, 2, 2), (5, 2, 2, 3, 1), (7, 1, 2, 6, "dw"),
             (3, 1, 3, 1, "dw"), (5, 1, (1, 2), 5, "dw"), (3, 1, (3, 1), 7, 1),
             (7, 2, 1, 3, "dw"), (1, 2, 1, 0, 2), (3, 3, 2, 2, "dw"), (5, (1, 2), 1, 2, "dw"),
             ((2, 3), 2, 1, 1, "dw"), (1, 1, 1, 0, 2), (1, 1, 2, 0, 1)]
ISA_TOLERANCES = {torch.float64: 1e-10, torch.float32: 1e-4, torch.bfloat16: 5e-2, torch.float16: 5e-3}


def _cpu_supports(isa):
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    return {"avx512_bf16": " avx512_bf16" in flags and " avx512bw" in flags,
            "avx512": " avx512f" in flags, "avx2": " avx2" in flags and " fma" in flags,
            "generic": True}[isa]


ISAS = ["avx512_bf16", "avx512", "avx2", "generic"]


@pytest.mark.parametrize("isa", ISAS)
def test_each_instruction_set_build_matches_the_reference(isa, monkeypatch):
    if not _cpu_supports(isa):
        pytest.skip(f"this CPU lacks {isa}")
    monkeypatch.setenv("MULA_CPU_ISA", isa)
    torch.manual_seed(0)
    for (k, s, d, p, g), size in itertools.product(ISA_CASES, [(7, 9), (8, 32), (19, 37), (9, 70)]):
        kh, kw = (k, k) if isinstance(k, int) else k
        c_in = 4 if g == "dw" else 12
        groups = c_in if g == "dw" else g
        c_out = c_in if g == "dw" else 26
        x = torch.randn(2, c_in, *size, dtype=torch.float64, requires_grad=True)
        w = torch.randn(2, c_out, c_in // groups, kh, kw, dtype=torch.float64, requires_grad=True)
        b = torch.randn(2, c_out, dtype=torch.float64, requires_grad=True)
        args = (s, p, d, groups)
        expected = reference.unfold(x, w, b, *args)
        grad_output = torch.randn_like(expected)
        wanted = (expected,) + torch.autograd.grad(expected, (x, w, b), grad_output)
        for dtype, tolerance in ISA_TOLERANCES.items():
            leaves = [t.detach().to(dtype).requires_grad_() for t in (x, w, b)]
            out = mula_ops.dynamic_conv2d(*leaves, *args)
            got = (out,) + torch.autograd.grad(out, leaves, grad_output.to(dtype))
            for name, value, want in zip(("output", "grad_input", "grad_weight", "grad_bias"), got, wanted):
                error = (value.double() - want).abs().max().item() / max(want.abs().max().item(), 1.0)
                assert error < tolerance, (k, s, d, p, g, size, dtype, name, error)


# Channel-blocked shapes (not depthwise) with odd numbers of planes per group
# (5 input, 13 output), which the avx512_bf16 build pairs up with a zero
# plane, and rows of 16 + 8 columns, whose weight gradient on pairs of
# pixels reads into the zero padding; and depthwise ones, which that build
# runs on pairs of neighbouring taps (column dilation 2: pairs two columns
# apart), with rows shorter than a vector of pairs (24 columns, 7x7) and
# longer.
BFLOAT16_CASES = [(1, 1, 1, 0, 1), (3, 1, 1, 1, 2), (3, 2, 1, 1, 2), (5, 1, 2, 4, 1), (7, 1, 1, 3, 2),
                  (1, 2, 1, 0, 2), (3, 1, 1, 1, "dw"), (5, 1, 2, 4, "dw"), (7, 1, 1, 3, "dw"),
                  (7, 1, (1, 2), 0, "dw")]


@pytest.mark.parametrize("isa", ISAS)
def test_bfloat16_sums_its_values_in_float(isa, monkeypatch):
    """bfloat16 multiplies in float (exactly) and rounds once on store: against
    float64 on the same bfloat16 values, every output and gradient is within
    a few bfloat16 roundings of the largest, tighter than the dtype test
    above allows."""
    if not _cpu_supports(isa):
        pytest.skip(f"this CPU lacks {isa}")
    monkeypatch.setenv("MULA_CPU_ISA", isa)
    torch.manual_seed(0)
    for (k, s, d, p, groups), size in itertools.product(BFLOAT16_CASES, [(9, 24), (20, 40)]):
        c_out = 10 if groups == "dw" else 26
        groups = 10 if groups == "dw" else groups
        x, w, b = (t.to(torch.bfloat16) for t in (torch.randn(2, 10, *size),
                                                  torch.randn(2, c_out, 10 // groups, k, k),
                                                  torch.randn(2, c_out)))
        args = (s, p, d, groups)
        leaves = [t.double().requires_grad_() for t in (x, w, b)]
        expected = reference.unfold(*leaves, *args)
        grad_output = torch.randn_like(expected).to(torch.bfloat16)
        wanted = (expected,) + torch.autograd.grad(expected, leaves, grad_output.double())
        leaves = [t.clone().requires_grad_() for t in (x, w, b)]
        out = mula_ops.dynamic_conv2d(*leaves, *args)
        got = (out,) + torch.autograd.grad(out, leaves, grad_output)
        for name, value, want in zip(("output", "grad_input", "grad_weight", "grad_bias"), got, wanted):
            error = (value.double() - want).abs().max().item() / want.abs().max().item()
            assert error < 2 ** -7, (k, s, d, p, groups, size, name, error)


@pytest.mark.parametrize("isa", ISAS)
def test_an_infinity_reaches_only_the_outputs_whose_window_holds_it(isa, monkeypatch):
    """No kernel multiplies a value outside a filter's window, not even by a
    zero (infinity times zero is NaN): one +inf input, positive filters, and
    the output is +inf exactly where the window covers it, finite elsewhere."""
    if not _cpu_supports(isa):
        pytest.skip(f"this CPU lacks {isa}")
    monkeypatch.setenv("MULA_CPU_ISA", isa)
    torch.manual_seed(0)
    for (k, d, p, groups), dtype in itertools.product(
            [(3, 1, 1, "dw"), (5, 2, 3, "dw"), (7, 1, 3, "dw"), (7, (1, 2), 2, "dw"), (3, 1, 1, 2)],
            [torch.float32, torch.float64, torch.bfloat16, torch.float16]):
        groups = 4 if groups == "dw" else groups
        x = torch.zeros(1, 4, 12, 40)
        x[0, :, 5, 17] = float("inf")
        w = torch.rand(1, 4, 4 // groups, k, k) + 0.5
        out = mula_ops.dynamic_conv2d(x.to(dtype), w.to(dtype), None, 1, p, d, groups)
        covered = torch.nn.functional.conv2d(x.isinf().double(), torch.ones(4, 4 // groups, k, k,
                                             dtype=torch.float64), None, 1, p, d, groups) > 0
        assert not out.isnan().any(), (k, d, p, groups, dtype)
        assert torch.equal(out.isinf(), covered), (k, d, p, groups, dtype)


# Shapes on the Winograd tiles (3x3, stride 1, enough planes per group;
# csrc/cpu/winograd_tiles.h): odd and even output sizes (half tiles at the
# edges), tile rows shorter and longer than a vector of tiles, padding 0 to
# 3 (at 3 grad_input's margin, 2 - padding, crops grad_output), groups 2;
# the weight gradient on the tiles from 8 vectors of tiles per plane (at
# least 128 tiles in every build; 33 input planes: not a whole number of
# vectors), on the direct tiles on smaller planes.
# (in, out, groups), (height, width), padding.
WINOGRAD_CASES = [((33, 40, 1), (25, 37), 1), ((48, 64, 2), (30, 40), 0), ((32, 24, 1), (21, 8), 2),
                  ((20, 20, 1), (10, 11), 3)]


def _float64_oracle(x, w, b, padding, groups, grad_output=None):
    leaves = [t.detach().double().requires_grad_() for t in (x, w, b)]
    out = reference.unfold(*leaves, 1, padding, 1, groups)
    grad_output = torch.randn_like(out) if grad_output is None else grad_output.double()
    return (out,) + torch.autograd.grad(out, leaves, grad_output), grad_output


@pytest.mark.parametrize("isa", ISAS)
def test_winograd_tiles_match_the_reference(isa, monkeypatch):
    """Forward and all three gradients on the Winograd tiles, in every dtype,
    against float64; in float32 their bits differ from the direct tiles'
    (MULA_CPU_WINOGRAD=0), which shows that the tiles ran (the weight
    gradient's on planes of at least 128 tiles)."""
    if not _cpu_supports(isa):
        pytest.skip(f"this CPU lacks {isa}")
    monkeypatch.setenv("MULA_CPU_ISA", isa)
    torch.manual_seed(0)
    for ((c_in, c_out, groups), size, padding), dtype in itertools.product(WINOGRAD_CASES, ISA_TOLERANCES):
        x = torch.randn(2, c_in, *size)
        w = torch.randn(2, c_out, c_in // groups, 3, 3) / (c_in // groups * 9) ** 0.5
        b = torch.randn(2, c_out)
        wanted, grad_output = _float64_oracle(x, w, b, padding, groups)
        results = {}
        for setting in ("1", "0"):
            monkeypatch.setenv("MULA_CPU_WINOGRAD", setting)
            leaves = [t.to(dtype).requires_grad_() for t in (x, w, b)]
            out = mula_ops.dynamic_conv2d(*leaves, 1, padding, 1, groups)
            results[setting] = (out,) + torch.autograd.grad(out, leaves, grad_output.to(dtype))
            for name, value, want in zip(("output", "grad_input", "grad_weight", "grad_bias"),
                                         results[setting], wanted):
                error = (value.double() - want).abs().max().item() / want.abs().max().item()
                assert error < ISA_TOLERANCES[dtype], (c_in, c_out, groups, size, padding, dtype, setting,
                                                       name, error)
        if dtype == torch.float32:
            out_size = [side + 2 * padding - 2 for side in size]
            tiles = (out_size[0] + 1) // 2 * ((out_size[1] + 1) // 2)
            names = ("output", "grad_input", "grad_weight")[:3 if tiles >= 128 else 2]
            for name, on, off in zip(names, results["1"], results["0"]):
                assert not torch.equal(on, off), (c_in, c_out, groups, size, padding, name)


def test_winograd_tiles_in_bands_of_tile_rows(monkeypatch):
    """A plane whose transformed inputs exceed the tiles' band (4 MiB: 32
    float64 planes of 46 x 46 tiles) runs in bands of tile rows, forward and
    both gradients."""
    monkeypatch.delenv("MULA_CPU_WINOGRAD", raising=False)
    torch.manual_seed(0)
    x = torch.randn(1, 32, 92, 91, dtype=torch.float64, requires_grad=True)
    w = torch.randn(1, 32, 32, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(1, 32, dtype=torch.float64)
    wanted, grad_output = _float64_oracle(x, w, b, 1, 1)
    out = mula_ops.dynamic_conv2d(x, w, b, 1, 1)
    got = (out,) + torch.autograd.grad(out, (x, w), grad_output)
    for name, value, want in zip(("output", "grad_input", "grad_weight"), got, wanted):
        assert (value - want).abs().max().item() < 1e-12 * want.abs().max().item(), name


@pytest.mark.parametrize("isa", ISAS)
def test_pointwise_product_in_bands_of_pixels(isa, monkeypatch):
    """A 1x1 convolution whose input planes exceed the matrix product's band
    (256 KiB: 128 planes of 700 pixels in float32 or float64) runs in bands
    of pixels, then the pixels past the last whole vector; forward and
    grad_input (through 13 output planes) against float64."""
    if not _cpu_supports(isa):
        pytest.skip(f"this CPU lacks {isa}")
    monkeypatch.setenv("MULA_CPU_ISA", isa)
    torch.manual_seed(0)
    x = torch.randn(2, 128, 20, 35, dtype=torch.float64)
    w = torch.randn(2, 13, 128, 1, 1, dtype=torch.float64) / 128 ** 0.5
    b = torch.randn(13, dtype=torch.float64)
    wanted, grad_output = _float64_oracle(x, w, b, 0, 1)
    for dtype in (torch.float32, torch.float64):
        leaves = [t.to(dtype).requires_grad_() for t in (x, w, b)]
        out = mula_ops.dynamic_conv2d(*leaves)
        got = (out,) + torch.autograd.grad(out, leaves, grad_output.to(dtype))
        for name, value, want in zip(("output", "grad_input", "grad_weight", "grad_bias"), got, wanted):
            error = (value.double() - want).abs().max().item() / want.abs().max().item()
            assert error < ISA_TOLERANCES[dtype], (dtype, name, error)


def test_winograd_error_stays_within_its_tile():
    """A tile's rounding error scales with the values of its own 4x4 input
    block: a value 1e20 times the rest spoils only the tiles whose blocks
    hold it (with padding 1, outputs 8 to 11 around input 10), every other
    output keeps float32's accuracy relative to its own window."""
    torch.manual_seed(0)
    x = torch.randn(1, 20, 32, 32, dtype=torch.float64)
    x[0, :, 10, 10] = 1e20
    w = torch.randn(1, 20, 20, 3, 3, dtype=torch.float64)
    out = mula_ops.dynamic_conv2d(x.float(), w.float(), None, 1, 1).double()
    expected = reference.unfold(x, w, None, 1, 1, 1, 1)
    magnitude = reference.unfold(x.abs(), w.abs(), None, 1, 1, 1, 1)
    away = torch.ones(32, 32, dtype=torch.bool)
    away[8:12, 8:12] = False
    error = ((out - expected).abs() / magnitude)[..., away]
    assert error.max().item() < 1e-5
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("isa", ISAS)
def test_winograd_planes_with_an_infinity_take_the_direct_tiles(isa, monkeypatch):
    """On the Winograd tiles an infinity would spread over its tiles as NaN:
    those planes are computed again on the direct tiles, so +inf appears
    exactly where a window holds it (forward and grad_input; every weight
    gradient of the sample whose input holds it) and never NaN, with the
    same bits on one thread and two."""
    if not _cpu_supports(isa):
        pytest.skip(f"this CPU lacks {isa}")
    monkeypatch.setenv("MULA_CPU_ISA", isa)
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    for dtype in (torch.float32, torch.float64, torch.float16):
        x = torch.rand(2, 32, 30, 40) + 0.5
        x[0, :, 5, 17] = float("inf")
        w = torch.rand(2, 40, 32, 3, 3) + 0.5
        finite_grad_output = torch.rand(2, 40, 30, 40) + 0.5
        grad_output = finite_grad_output.clone()
        grad_output[1, :3, 0, 39] = float("inf")
        x, w, grad_output, finite_grad_output = (t.to(dtype) for t in (x, w, grad_output, finite_grad_output))
        covered = torch.nn.functional.conv2d(x.isinf().double(), torch.ones(40, 32, 3, 3, dtype=torch.float64),
                                             None, 1, 1) > 0
        covered_input = torch.nn.functional.conv_transpose2d(
            grad_output.isinf().double(), torch.ones(40, 32, 3, 3, dtype=torch.float64), None, 1, 1) > 0
        runs = []
        try:
            for count in (1, 2):
                torch.set_num_threads(count)
                leaf, weight = x.clone().requires_grad_(), w.clone().requires_grad_()
                out = mula_ops.dynamic_conv2d(leaf, weight, None, 1, 1)
                grad_input = torch.autograd.grad(out, leaf, grad_output, retain_graph=True)[0]
                runs.append((out, grad_input, torch.autograd.grad(out, weight, finite_grad_output)[0]))
        finally:
            torch.set_num_threads(threads)
        for out, grad_input, grad_weight in runs:
            assert not any(t.isnan().any() for t in (out, grad_input, grad_weight)), dtype
            assert torch.equal(out.isinf(), covered), dtype
            assert torch.equal(grad_input.isinf(), covered_input), dtype
            assert grad_weight[0].isinf().all() and grad_weight[1].isfinite().all(), dtype
        for one, two in zip(*runs):
            assert torch.equal(one, two), dtype


def test_unknown_instruction_set_is_rejected(monkeypatch):
    monkeypatch.setenv("MULA_CPU_ISA", "sse9")
    with pytest.raises(RuntimeError, match="MULA_CPU_ISA=sse9 is not one of avx512_bf16, avx512, avx2, generic"):
        mula_ops.dynamic_conv2d(torch.randn(1, 1, 3, 3), torch.randn(1, 1, 1, 1, 1))


def _special_values(dtype):
    info = torch.finfo(dtype)
    values = torch.tensor([0.0, -0.0, 1.0, -2.5, info.max, -info.max, info.tiny, info.smallest_normal / 3,
                           info.eps, float("inf"), float("-inf")], dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    return torch.cat([values, torch.randn(4096, generator=generator) * 100,
                      torch.randn(4096, generator=generator) * info.tiny * 4])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_types_convert_exactly(dtype):
    # A 1x1 filter of one tap: the kernel computes x * tap in float32 and
    # rounds once, so the result must equal torch's own rounding bit for bit
    # (subnormals, infinities and overflow included).
    x = _special_values(dtype).to(dtype).view(1, 1, 1, -1)
    for tap in (1.0, 0.5, 1.0 / 3.0, 3.0):
        w = torch.full((1, 1, 1, 1, 1), tap, dtype=dtype)
        expected = (x.float() * w.float().item() + 0.0).to(dtype)  # + 0.0: -0 becomes +0
        got = mula_ops.dynamic_conv2d(x, w)
        assert torch.equal(got.view(torch.int16), expected.view(torch.int16)), tap
    nan = torch.full((1, 1, 1, 3), float("nan"), dtype=dtype)
    assert mula_ops.dynamic_conv2d(nan, torch.ones(1, 1, 1, 1, 1, dtype=dtype)).isnan().all()


def _transparent_huge_pages_mode():
    try:
        setting = open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    except OSError:
        return None
    return setting[setting.index("[") + 1:setting.index("]")]


def _asks_for_huge_pages(address):
    """Whether the mapping holding `address` was advised MADV_HUGEPAGE (the
    `hg` of its VmFlags in /proc/self/smaps)."""
    inside = False
    for line in open("/proc/self/smaps"):
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            start, end = (int(bound, 16) for bound in head.split("-"))
            inside = start <= address < end
        elif inside and head == "VmFlags:":
            return "hg" in line.split()[1:]
    raise AssertionError(f"no mapping holds {address:#x}")


@pytest.mark.skipif(_transparent_huge_pages_mode() != "madvise" or "THP_MEM_ALLOC_ENABLE" in os.environ,
                    reason="huge pages are asked for only where the system gives them on request")
@pytest.mark.parametrize("setting", ["1", "0"])
def test_large_fresh_outputs_ask_for_huge_pages(setting, monkeypatch):
    """A 32 MiB output and input gradient are mapped afresh by the C library
    (over glibc's largest mmap threshold): the kernels advise huge pages for
    them unless MULA_CPU_HUGE_PAGES=0, and the values are the same either way."""
    monkeypatch.setenv("MULA_CPU_HUGE_PAGES", setting)
    monkeypatch.setenv("MULA_CPU_OUTPUT_POOL", "0")  # fresh memory, not a block kept from before
    torch.manual_seed(0)
    x = torch.randn(1, 64, 256, 256, dtype=torch.float64, requires_grad=True)
    w = torch.randn(1, 64, 1, 3, 3, dtype=torch.float64)
    out = mula_ops.dynamic_conv2d(x, w, None, 1, 1, 1, 64)
    (grad_input,) = torch.autograd.grad(out, x, out)
    for tensor in (out, grad_input):
        assert _asks_for_huge_pages(tensor.data_ptr() + tensor.nbytes // 2) == (setting == "1")
    expected = torch.nn.functional.conv2d(x, w[0], padding=1, groups=64)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_input, torch.autograd.grad(expected, x, expected)[0], rtol=1e-12, atol=1e-12)


# Two 32 MiB float64 outputs in a row, freed in between: the page faults of
# each call, whether the second reused the first's block, and a check of its
# values against PyTorch's convolution.
_REUSE_PROBE = """
import json, resource, torch, mula_ops
torch.manual_seed(0)
w = torch.randn(1, 64, 1, 3, 3, dtype=torch.float64)
faults, same = [], []
for x in [torch.randn(1, 64, 256, 256, dtype=torch.float64) for _ in range(2)]:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    out = mula_ops.dynamic_conv2d(x, w, None, 1, 1, 1, 64)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    same.append(out.data_ptr())
    expected = torch.nn.functional.conv2d(x, w[0], padding=1, groups=64)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    del out
print(json.dumps({"faults": faults, "same_block": same[0] == same[1]}))
"""


@pytest.mark.parametrize("pool", ["1", "0"])
def test_large_outputs_reuse_freed_memory(pool):
    """An output of 32 MiB comes from the output pool: freed and asked for
    again it is the same block, already in place (the call faults in almost
    none of its 8192 pages), and every value is new. MULA_CPU_OUTPUT_POOL=0
    maps it afresh each time. In a fresh process whose glibc maps every block
    of 128 KiB and more and unmaps it when freed (a fixed mmap threshold), so
    that without the pool nothing else can keep the block."""
    if pool == "0" and (_transparent_huge_pages_mode() == "always" or "THP_MEM_ALLOC_ENABLE" in os.environ):
        pytest.skip("fresh memory faults in 2 MiB at a time here: too few faults to tell")
    env = dict(os.environ, MULA_CPU_OUTPUT_POOL=pool, MULA_CPU_HUGE_PAGES="0",  # count 4 KiB pages
               MALLOC_MMAP_THRESHOLD_="131072")
    run = subprocess.run([sys.executable, "-c", _REUSE_PROBE], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.splitlines()[-1])
    faults = result["faults"]
    pages = (32 << 20) // 4096
    if pool == "1":
        assert result["same_block"] and faults[1] < pages // 8, result
    else:
        assert faults[1] > pages // 2, result
