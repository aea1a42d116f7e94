"""The CUDA kernels, run on the CPU by the CUDA emulator (csrc/emulator), against
the same independent oracles and case matrix as the CPU kernels.

The kernel source, the launch code and the torch host code are exactly those of
the CUDA build; only the launch itself differs (the emulator runs each block's
threads as fibers with real barriers). The extension is compiled on the fly
into build/emulated_cuda (about fifteen seconds the first time)."""
import os

import pytest
import torch
from conv_cases import CASES, ConvCase, make_inputs, per_sample_conv2d
from torch.utils import cpp_extension

from mula_ops import reference
from mula_ops._registrations import register
from mula_ops.functional import call_operator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")


@pytest.fixture(scope="module")
def emulated():
    """torch.ops.mula_emulated: the emulated kernels, with the fake kernels and
    autograd of mula_ops itself (mula_ops/_registrations.py)."""
    build_directory = os.path.join(ROOT, "build", "emulated_cuda")
    os.makedirs(build_directory, exist_ok=True)
    cpp_extension.load(
        name="mula_emulated_cuda",
        sources=[os.path.join(CSRC, "emulator", "emulated_ops.cpp"),
                 os.path.join(CSRC, "emulator", "emulated_kernels.cpp")],
        extra_cflags=["-O2", "-DMULA_CUDA_EMULATION", "-Wno-unknown-pragmas"],
        extra_include_paths=[CSRC],
        build_directory=build_directory,
        is_python_module=False,
        verbose=False,
    )
    register("mula_emulated")
    return torch.ops.mula_emulated


def conv(ops, input, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """The emulated kernels behind mula_ops.dynamic_conv2d's argument handling."""
    return call_operator(ops.dynamic_conv2d, input, weight, bias, stride, padding, dilation, groups)


def _leaves(tensors):
    return [None if t is None else t.detach().clone().requires_grad_(True) for t in tensors]


def check_against_oracle(ops, case, dtype=torch.float64, tolerance=1e-12):
    """Forward and every gradient against PyTorch's conv (one sample at a time)
    computed in float64 from the same (rounded) inputs."""
    inputs = make_inputs(case, dtype=dtype)
    ours, theirs = _leaves(inputs), _leaves([None if t is None else t.double() for t in inputs])
    out = conv(ops, *ours, **case.kwargs)
    expected = per_sample_conv2d(*theirs, case.stride, case.padding, case.dilation, case.groups)
    assert out.shape == expected.shape and out.dtype == dtype and out.is_contiguous()
    torch.testing.assert_close(out.double(), expected, rtol=tolerance, atol=tolerance)
    if dtype == torch.float64:
        unfolded = reference.unfold(*[None if t is None else t.detach() for t in ours], **case.kwargs)
        torch.testing.assert_close(out.detach(), unfolded, rtol=tolerance, atol=tolerance,
                                   msg=lambda m: f"against reference.unfold: {m}")
    grad_output = torch.rand(expected.shape, generator=torch.Generator().manual_seed(1),
                             dtype=torch.float64) * 2 - 1
    out.backward(grad_output.to(dtype))
    expected.backward(grad_output.to(dtype).double())
    for name, mine, oracle in zip(("input", "weight", "bias"), ours, theirs):
        if mine is not None:
            assert mine.grad.dtype == dtype
            # Gradients sum over a whole plane: scale the tolerance with its size.
            scale = max(1.0, case.height * case.width / 64) if name != "input" else 1.0
            torch.testing.assert_close(mine.grad.double(), oracle.grad, rtol=tolerance * scale,
                                       atol=tolerance * scale, msg=lambda m: f"grad of {name}: {m}")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_matches_oracle_float64(emulated, case):
    check_against_oracle(emulated, case)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_matches_oracle_float32(emulated, case):
    """The matrix again in float32: unlike float64 it takes the register-blocked
    forward wherever the filter is a square 3, 5 or 7 at stride 1 or 2 or dilation 2."""
    check_against_oracle(emulated, case, torch.float32, 1e-5)


# Planes larger than one 32 x 32 tile (edges, several tiles per plane, the
# two-pass weight gradient), the tile shrunk to fit shared memory, and the
# register-filter and generic kernels at these sizes.
TILED_CASES = {
    "split_7x7": ConvCase(1, 2, 2, 41, 37, (7, 7), padding=(3, 3), groups=2, bias="per_sample"),
    "split_5x5_strided": ConvCase(2, 2, 2, 70, 45, (5, 5), stride=(2, 2), padding=(2, 1), groups=2,
                                  bias="shared"),
    "split_generic_dilated": ConvCase(1, 4, 2, 35, 40, (2, 4), padding=(1, 2), dilation=(2, 1), groups=2,
                                      bias="shared"),
    "split_dense_3x3": ConvCase(1, 3, 2, 34, 33, (3, 3), padding=(1, 1)),
    "shrunk_tile_dilated": ConvCase(1, 1, 1, 90, 90, (5, 5), dilation=(12, 12), bias="shared"),
}


@pytest.mark.parametrize("case", TILED_CASES.values(), ids=lambda c: c.id)
def test_tiled_planes_match_oracle(emulated, case):
    check_against_oracle(emulated, case)


LOW_PRECISION_CASES = {
    "depthwise_7x7": ConvCase(2, 4, 4, 12, 10, (7, 7), padding=(3, 3), groups=4, bias="per_sample"),
    "groups2_3x5_strided": ConvCase(1, 4, 6, 9, 11, (3, 5), stride=(2, 1), padding=(1, 2), groups=2,
                                    bias="shared"),
    "split_depthwise_3x3": ConvCase(1, 2, 2, 40, 36, (3, 3), padding=(1, 1), groups=2),
    # The blocked forward's tiles: 32 threads along a row and an odd output
    # width (scalar stores), several tiles down and across, grouped channels.
    "blocked_7x7_stride2": ConvCase(1, 2, 2, 75, 70, (7, 7), stride=(2, 2), padding=(3, 3), groups=2,
                                    bias="per_sample"),
    "blocked_5x5_dilation2": ConvCase(1, 2, 2, 45, 67, (5, 5), padding=(4, 4), dilation=(2, 2), groups=2,
                                      bias="shared"),
    "blocked_3x3_grouped": ConvCase(2, 4, 6, 33, 20, (3, 3), padding=(1, 1), groups=2),
}
# float32 accumulates in float32; the half types in float32 and round once.
TOLERANCES = {torch.float32: 1e-5, torch.bfloat16: 3e-2, torch.float16: 4e-3}


@pytest.mark.parametrize("dtype", list(TOLERANCES), ids=str)
@pytest.mark.parametrize("case", LOW_PRECISION_CASES.values(), ids=lambda c: c.id)
def test_lower_precision_against_float64(emulated, case, dtype):
    check_against_oracle(emulated, case, dtype, TOLERANCES[dtype])


GRADCHECK_CASES = [  # (case, fast_mode): each emulated call costs thread start-up, keep them small
    (ConvCase(1, 1, 1, 4, 4, (3, 3), padding=(1, 1), bias="per_sample"), False),
    (ConvCase(1, 2, 4, 5, 6, (2, 3), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2,
              bias="shared"), True),
]


@pytest.mark.parametrize("case,fast_mode", GRADCHECK_CASES, ids=lambda c: getattr(c, "id", str(c)))
def test_gradcheck_float64(emulated, case, fast_mode):
    x, w, b = make_inputs(case, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: conv(emulated, *t, **case.kwargs), (x, w, b),
                                    fast_mode=fast_mode)


@pytest.mark.parametrize("case", [c for c, _ in GRADCHECK_CASES] + [
    ConvCase(1, 2, 2, 5, 5, (3, 3), stride=(2, 2), padding=(1, 1), dilation=(2, 2), groups=2,
             bias="per_sample"),
    ConvCase(1, 2, 2, 4, 5, (1, 1), padding=(1, 0), groups=1, bias="shared")], ids=lambda c: c.id)
def test_gradgradcheck_float64(emulated, case):
    """Second-order gradients through mula_ops' autograd of the fused
    backward, here on the emulated CUDA kernels (depthwise, general groups,
    dense, stride, dilation, both bias modes)."""
    x, w, b = make_inputs(case, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda *t: conv(emulated, *t, **case.kwargs), (x, w, b),
                                        fast_mode=True)


@pytest.mark.parametrize("case", [LOW_PRECISION_CASES["groups2_3x5_strided"], TILED_CASES["split_7x7"]],
                         ids=lambda c: c.id)
def test_only_requested_gradients_are_computed(emulated, case):
    """The fused backward with one output requested gives exactly that output
    of the full backward (general groups and stride; a split 7x7 plane)."""
    x, w, _ = make_inputs(case)
    args = (case.stride, case.padding, case.dilation, case.groups)
    grad_output = torch.randn_like(emulated.dynamic_conv2d(x, w, None, *args))
    everything = emulated.dynamic_conv2d_backward(grad_output, x, w, *args, [True, True, True])
    for wanted in range(3):
        mask = [i == wanted for i in range(3)]
        alone = emulated.dynamic_conv2d_backward(grad_output, x, w, *args, mask)
        for i, (mine, full) in enumerate(zip(alone, everything)):
            if i == wanted:
                assert torch.equal(mine, full), f"output {i} alone differs from the full backward"
            else:
                assert mine.shape == (0,)
    torch.testing.assert_close(everything[2], grad_output.sum((2, 3)), rtol=1e-12, atol=1e-12)


def test_empty_input_plane_still_sums_grad_bias(emulated):
    """Padding alone can give a non-empty output from an empty input plane:
    the backward (tiled over the input) must still sum grad_bias."""
    x, w = torch.randn(2, 2, 0, 3, dtype=torch.float64), torch.randn(2, 2, 1, 3, 3, dtype=torch.float64)
    args = ([1, 1], [2, 1], [1, 1], 2)
    grad_output = torch.randn_like(emulated.dynamic_conv2d(x, w, None, *args))
    assert grad_output.shape == (2, 2, 2, 3)
    grad_input, grad_weight, grad_bias = emulated.dynamic_conv2d_backward(
        grad_output, x, w, *args, [True, True, True])
    assert grad_input.shape == x.shape
    assert torch.equal(grad_weight, torch.zeros_like(w))  # every tap reads padding
    torch.testing.assert_close(grad_bias, grad_output.sum((2, 3)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", [TILED_CASES["split_7x7"], TILED_CASES["split_5x5_strided"]],
                         ids=lambda c: c.id)
def test_bitwise_independent_of_block_order(emulated, case):
    """The emulator runs every launch's blocks in a different shuffled order
    (as a GPU may schedule them), so repeated calls differ in order only: a
    kernel whose result depended on it (a float atomic, a block reading
    another's output) would give different bits here."""
    x, w, b = make_inputs(case, dtype=torch.float32)
    args = (case.stride, case.padding, case.dilation, case.groups)
    grad_output = torch.randn_like(emulated.dynamic_conv2d(x, w, b, *args))
    runs = [(emulated.dynamic_conv2d(x, w, b, *args),
             *emulated.dynamic_conv2d_backward(grad_output, x, w, *args, [True, True, True]))
            for _ in range(4)]
    for run in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(run, runs[0]))


def test_bad_input_gets_the_shared_checks(emulated):
    x = torch.randn(2, 4, 8, 8)
    with pytest.raises(RuntimeError, match="expected weight.size\\(0\\) to equal the batch size"):
        emulated.dynamic_conv2d(x, torch.randn(3, 4, 1, 3, 3), None, [1, 1], [1, 1], [1, 1], 4)
    with pytest.raises(RuntimeError, match="too large for the kernels' shared-memory tile"):
        emulated.dynamic_conv2d(torch.randn(1, 1, 400, 400, dtype=torch.float64),
                                torch.randn(1, 1, 1, 3, 3, dtype=torch.float64), None,
                                [1, 1], [0, 0], [150, 150], 1)
