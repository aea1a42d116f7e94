"""The operator against independent oracles: float64 references, PyTorch's own
conv one sample at a time, gradcheck, opcheck, compile/export, every dtype."""
import importlib

import pytest
import torch
from conv_cases import CASES, NAMED_CASES, WIDE_GROUPS_CASES, ConvCase, make_inputs, per_sample_conv2d

import mula_ops
from mula_ops import reference

# Depthwise, general groups, dense; stride, dilation, both bias modes.
SMALL_CASES = [NAMED_CASES[name] for name in
               ("depthwise_3x3", "groups2_strided_dilated", "dense_strided_dilated", "depthwise_7x7")]


def _clone_grad_inputs(tensors):
    return [None if t is None else t.detach().clone().requires_grad_(True) for t in tensors]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_forward_matches_oracle_and_references(case, device):
    x, w, b = make_inputs(case, device=device)
    expected = per_sample_conv2d(x, w, b, case.stride, case.padding, case.dilation, case.groups)
    out = mula_ops.dynamic_conv2d(x, w, b, **case.kwargs)
    assert out.shape == expected.shape and out.dtype == torch.float64 and out.is_contiguous()
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    for name, implementation in reference.IMPLEMENTATIONS.items():
        torch.testing.assert_close(implementation(x, w, b, **case.kwargs), expected, rtol=1e-12, atol=1e-12,
                                   msg=lambda m: f"reference.{name}: {m}")


@pytest.mark.parametrize("kernel", [(3, 3), (3, 5), (2, 2)], ids=str)
@pytest.mark.parametrize("bias", ["shared", "per_sample"])
def test_no_input_channels_give_the_bias(kernel, bias, device):
    """A sum over no input channels is zero: every output is its bias, in the
    register-blocked and the general paths alike (F.conv2d is no oracle here:
    it returns no output channels)."""
    case = ConvCase(2, 0, 3, 5, 6, kernel, padding=(1, 1), bias=bias)
    x, w, b = make_inputs(case, device=device)
    out = mula_ops.dynamic_conv2d(x, w, b, **case.kwargs)
    per_sample_bias = b.expand(case.batch, -1) if b.dim() == 1 else b
    assert out.shape[:2] == (case.batch, case.out_channels) and out.numel() > 0
    assert torch.equal(out, per_sample_bias[:, :, None, None].expand_as(out))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_backward_matches_oracle(case, device):
    inputs = make_inputs(case, device=device)
    ours, theirs = _clone_grad_inputs(inputs), _clone_grad_inputs(inputs)
    grad_output = torch.randn_like(per_sample_conv2d(*[t.detach() if t is not None else None for t in inputs],
                                                     case.stride, case.padding, case.dilation, case.groups))
    mula_ops.dynamic_conv2d(*ours, **case.kwargs).backward(grad_output)
    per_sample_conv2d(*theirs, case.stride, case.padding, case.dilation, case.groups).backward(grad_output)
    for name, mine, expected in zip(("input", "weight", "bias"), ours, theirs):
        if mine is not None:
            torch.testing.assert_close(mine.grad, expected.grad, rtol=1e-11, atol=1e-11,
                                       msg=lambda m: f"grad of {name}: {m}")


@pytest.mark.parametrize("case", SMALL_CASES, ids=lambda c: c.id)
def test_gradcheck(case, device):
    x, w, b = make_inputs(case, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: mula_ops.dynamic_conv2d(*t, **case.kwargs), (x, w, b))


@pytest.mark.parametrize("wrt", ["all", "input", "weight"])
@pytest.mark.parametrize("case", SMALL_CASES, ids=lambda c: c.id)
def test_gradgradcheck(case, wrt, device):
    """Second-order gradients (gradient penalties, meta-learning) through the
    fused backward's own autograd, against finite differences; 'input' and
    'weight' leave the other operand constant, so the backward runs with a
    partial output_mask."""
    x, w, b = make_inputs(case, device=device)
    variables = {"all": [x, w] + ([b] if b is not None else []), "input": [x], "weight": [w]}[wrt]
    for t in variables:
        t.requires_grad_(True)

    def conv(*leaves):
        values = dict(zip([id(t) for t in variables], leaves))
        return mula_ops.dynamic_conv2d(*[values.get(id(t), t) if t is not None else None for t in (x, w, b)],
                                       **case.kwargs)

    assert torch.autograd.gradgradcheck(conv, variables)


def test_second_order_gradient_is_not_zero(device):
    """A gradient penalty on the input gradient reaches the filters (it was
    once silently zero): its value against the grouped trick's, which is
    differentiated by PyTorch's own conv."""
    case = NAMED_CASES["depthwise_7x7"]
    results = []
    for conv in (mula_ops.dynamic_conv2d, reference.grouped):
        x, w, b = make_inputs(case, device=device, requires_grad=True)
        grad_x, = torch.autograd.grad(conv(x, w, b, **case.kwargs).square().sum(), x, create_graph=True)
        results.append(torch.autograd.grad(grad_x.square().sum(), w)[0])
    assert results[1].abs().max() > 0
    torch.testing.assert_close(results[0], results[1], rtol=1e-10, atol=1e-10)


def test_backward_skips_what_is_not_required(device):
    case = NAMED_CASES["groups2_strided_dilated"]
    x, w, b = make_inputs(case, device=device)
    w.requires_grad_(True)
    out = mula_ops.dynamic_conv2d(x, w, b, **case.kwargs)
    out.backward(torch.ones_like(out))
    assert x.grad is None and b.grad is None and w.grad is not None
    grads = torch.ops.mula_ops.dynamic_conv2d_backward(
        torch.ones_like(out), x, w.detach(), list(case.stride), list(case.padding), list(case.dilation),
        case.groups, [False, True, False])
    assert grads[0].numel() == 0 and grads[2].numel() == 0
    torch.testing.assert_close(grads[1], w.grad)


@pytest.mark.parametrize("case", [NAMED_CASES["depthwise_3x3"], NAMED_CASES["groups2_strided_dilated"]],
                         ids=lambda c: c.id)
def test_opcheck(case, device):
    x, w, b = make_inputs(case, device=device, requires_grad=True)
    hyper = [list(case.stride), list(case.padding), list(case.dilation), case.groups]
    torch.library.opcheck(torch.ops.mula_ops.dynamic_conv2d.default, (x, w, b, *hyper))
    grad_output = torch.randn_like(mula_ops.dynamic_conv2d(x, w, b, **case.kwargs))
    torch.library.opcheck(torch.ops.mula_ops.dynamic_conv2d_backward.default,
                          (grad_output, x.detach(), w.detach(), *hyper, [True, True, True]))


class _Adapted(torch.nn.Module):
    """A miniature of MuLA's use: 1x1 conv, per-sample depthwise 3x3, 1x1 conv."""

    def __init__(self):
        super().__init__()
        self.u = torch.nn.Conv2d(4, 4, 1)
        self.dynamic = mula_ops.DynamicConv2d(4, 4, 3, padding=1, groups=4)
        self.v = torch.nn.Conv2d(4, 4, 1)

    def forward(self, features, filters):
        return self.v(torch.relu(self.dynamic(self.u(features), filters)))


def _adapted_inputs(device):
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 4, 8, 8, generator=generator).to(device)
    filters = torch.randn(2, 4, 3, 3, generator=generator).to(device)
    return features, filters


def test_torch_compile_fullgraph(device):
    module = _Adapted().to(device)
    features, filters = _adapted_inputs(device)
    expected = module(features, filters)
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(module)(features, filters)
    assert explanation.graph_break_count == 0
    compiled = torch.compile(module, fullgraph=True)
    torch.testing.assert_close(compiled(features, filters), expected)
    features.requires_grad_(True)
    compiled(features, filters).sum().backward()
    assert features.grad is not None and torch.isfinite(features.grad).all()


def test_torch_export(device):
    module = _Adapted().to(device)
    features, filters = _adapted_inputs(device)
    exported = torch.export.export(module, (features, filters))
    assert any(node.target is torch.ops.mula_ops.dynamic_conv2d.default for node in exported.graph.nodes)
    torch.testing.assert_close(exported.module()(features, filters), module(features, filters))


# Half types store the result rounded to their precision after float32
# accumulation: allowed error = one unit in the last place of the result plus
# float32 accumulation error, scaled by the sum of |terms| (the op on |x|, |w|).
HALF_ULP = {torch.float16: 2.0 ** -10, torch.bfloat16: 2.0 ** -7, torch.float32: 2.0 ** -22}
HALF_CASES = [NAMED_CASES[name] for name in (
    "dense_1x1_strided_dilated", "groups2_3x3_dilated", "groups2_5x5_strided", "depthwise_7x7_dilated",
    "depthwise_3x5_strided", "depthwise_3x3", "groups2_strided_dilated", "dense_3x3_winograd",
    "groups2_3x3_winograd")] + WIDE_GROUPS_CASES


def _assert_within_ulp(actual, expected, magnitude, dtype, summed_over_samples=False):
    error = (actual.double() - expected).abs()
    allowed = HALF_ULP[dtype] * expected.abs() + 1e-5 * magnitude + 1e-30
    if summed_over_samples:
        # A shared bias's gradient sums the per-sample gradients, each already
        # rounded to the dtype: up to one more ulp of every term.
        allowed = allowed + HALF_ULP[dtype] * magnitude
    assert (error <= allowed).all(), f"max excess {(error - allowed).max().item():.3g} in {dtype}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("case", HALF_CASES, ids=lambda c: c.id)
def test_lower_precision_against_float64(case, dtype, device):
    x, w, b = make_inputs(case, dtype=dtype, device=device)
    out = mula_ops.dynamic_conv2d(x, w, b, **case.kwargs)
    assert out.dtype == dtype
    exact = [None if t is None else t.double() for t in (x, w, b)]
    expected = reference.grouped(*exact, **case.kwargs)
    magnitude = reference.grouped(*[None if t is None else t.abs() for t in exact], **case.kwargs)
    _assert_within_ulp(out, expected, magnitude, dtype)

    generator = torch.Generator().manual_seed(1)
    grad_output = (torch.rand(out.shape, generator=generator, dtype=torch.float64) * 2 - 1).to(out)
    ours = _clone_grad_inputs((x, w, b))
    mula_ops.dynamic_conv2d(*ours, **case.kwargs).backward(grad_output)
    theirs = _clone_grad_inputs(exact)
    reference.grouped(*theirs, **case.kwargs).backward(grad_output.double())
    magnitudes = _clone_grad_inputs([None if t is None else t.abs() for t in exact])
    reference.grouped(*magnitudes, **case.kwargs).backward(grad_output.double().abs())
    for name, mine, expected_t, magnitude_t in zip(("input", "weight", "bias"), ours, theirs, magnitudes):
        if mine is not None:
            assert mine.grad.dtype == dtype
            _assert_within_ulp(mine.grad, expected_t.grad, magnitude_t.grad, dtype,
                               summed_over_samples=name == "bias" and case.bias == "shared")


def test_autocast_runs_in_lower_precision():
    case = NAMED_CASES["depthwise_3x3"]
    x, w, b = make_inputs(case, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = mula_ops.dynamic_conv2d(x, w, b, **case.kwargs)
    assert out.dtype == torch.bfloat16
    expected = mula_ops.dynamic_conv2d(x.bfloat16(), w.bfloat16(), b.bfloat16(), **case.kwargs)
    assert torch.equal(out, expected)


@pytest.mark.parametrize("case", [NAMED_CASES[name] for name in (
    "depthwise_1x1_strided", "dense_5x5_strided_dilated", "groups2_strided_dilated",
    "groups2_3x3_winograd")] + WIDE_GROUPS_CASES,
    ids=lambda c: c.id)
def test_bitwise_deterministic_across_runs_and_threads(case, device):
    def run():
        x, w, b = make_inputs(case, dtype=torch.float32, device=device, requires_grad=True)
        out = mula_ops.dynamic_conv2d(x, w, b, **case.kwargs)
        out.backward(torch.cos(torch.arange(out.numel(), device=device, dtype=out.dtype)).view_as(out))
        return [out.detach(), x.grad, w.grad, b.grad if b is not None else x.grad]

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = run()
        torch.set_num_threads(2)
        first, second = run(), run()
    finally:
        torch.set_num_threads(threads)
    for a, b, c in zip(single, first, second):
        assert torch.equal(a, b) and torch.equal(b, c)


@pytest.mark.parametrize("layout", ["channels_last", "transposed", "sliced"])
def test_non_contiguous_inputs(layout, device):
    case = NAMED_CASES["depthwise_3x3_asymmetric_padding"]
    x, w, b = make_inputs(case, device=device)
    expected = mula_ops.dynamic_conv2d(x, w, b, **case.kwargs)
    if layout == "channels_last":
        x2, w2 = x.contiguous(memory_format=torch.channels_last), w.clone()
    elif layout == "transposed":
        x2 = x.transpose(2, 3).contiguous().transpose(2, 3)
        w2 = w.transpose(3, 4).contiguous().transpose(3, 4)
    else:
        wide = torch.zeros(x.shape[0], x.shape[1], x.shape[2], 2 * x.shape[3], dtype=x.dtype, device=device)
        wide[..., ::2] = x
        x2, w2 = wide[..., ::2], w
    assert not x2.is_contiguous()
    torch.testing.assert_close(mula_ops.dynamic_conv2d(x2, w2, b, **case.kwargs), expected, rtol=0, atol=0)


def test_output_keeps_the_input_memory_format(device):
    """As F.conv2d: a channels_last input gives a channels_last output, in
    eager mode and from the fake kernel that torch.compile traces with."""
    case = NAMED_CASES["groups2_strided_dilated"]
    x, w, b = make_inputs(case, device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    oracle = torch.nn.functional.conv2d(x, w[0], None, case.stride, case.padding, case.dilation, case.groups)
    out = mula_ops.dynamic_conv2d(x, w, b, **case.kwargs)
    assert out.stride() == oracle.stride() and out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, mula_ops.dynamic_conv2d(x.contiguous(), w, b, **case.kwargs), rtol=0, atol=0)
    fake = mula_ops.dynamic_conv2d(*[t.to("meta") for t in (x, w, b)], **case.kwargs)
    assert fake.shape == out.shape and fake.stride() == out.stride()


def test_depthwise_convenience_and_module(device):
    x, w, _ = make_inputs(ConvCase(2, 4, 4, 9, 9, (3, 3), padding=(1, 1), groups=4), device=device)
    expected = mula_ops.dynamic_conv2d(x, w, padding=1, groups=4)
    torch.testing.assert_close(mula_ops.dynamic_depthwise_conv2d(x, w[:, :, 0], padding=1), expected)
    for implementation in mula_ops.IMPLEMENTATIONS:
        module = mula_ops.DynamicConv2d(4, 4, 3, padding=1, groups=4, implementation=implementation)
        torch.testing.assert_close(module(x, w[:, :, 0]), expected, rtol=1e-12, atol=1e-12)
    assert repr(mula_ops.DynamicConv2d(256, 256, 7, padding=3, groups=256)) == \
        "DynamicConv2d(256, 256, kernel_size=(7, 7), padding=(3, 3), groups=256)"


def _bad(**overrides):
    args = dict(input=torch.rand(2, 4, 8, 8), weight=torch.rand(2, 4, 2, 3, 3), bias=None, stride=1, padding=1,
                dilation=1, groups=2)
    args.update(overrides)
    return args


BAD_INPUTS = {
    "input not 4-D": (_bad(input=torch.rand(4, 8, 8)), r"expected input to be 4-D"),
    "weight not 5-D": (_bad(weight=torch.rand(2, 4, 3, 3)), r"expected weight to be 5-D"),
    "batch differs": (_bad(weight=torch.rand(3, 4, 2, 3, 3)), r"weight.size\(0\) to equal the batch size"),
    "channels vs groups": (_bad(groups=3), r"divisible by groups"),
    "weight channels": (_bad(weight=torch.rand(2, 4, 3, 3, 3)), r"weight.size\(2\) to equal input channels"),
    "mixed dtypes": (_bad(weight=torch.rand(2, 4, 2, 3, 3, dtype=torch.float64)), r"same dtype as input"),
    "integer dtype": (_bad(input=torch.ones(2, 4, 8, 8, dtype=torch.int32),
                           weight=torch.ones(2, 4, 2, 3, 3, dtype=torch.int32)), r"float32, float64"),
    "empty output": (_bad(padding=0, input=torch.rand(2, 4, 2, 8)), r"output size would be empty"),
    "negative padding": (_bad(padding=-1), r"padding >= 0"),
    "zero stride": (_bad(stride=0), r"stride > 0"),
    "zero dilation": (_bad(dilation=(1, 0)), r"dilation > 0"),
    "bias shape": (_bad(bias=torch.rand(3)), r"expected bias of shape \(C_out,\)"),
    "padding word": (_bad(padding="full"), r"expected padding to be an int, a pair, 'same' or 'valid'"),
    "same with stride": (_bad(padding="same", stride=2), r"padding='same' expects stride 1"),
    "stride triple": (_bad(stride=(1, 1, 1)), r"expected stride to be an int or a pair"),
    "groups not int": (_bad(groups=2.0), r"expected groups to be an int"),
    "input not tensor": (_bad(input=[1.0]), r"expected input to be a Tensor"),
}


@pytest.mark.parametrize("args,pattern", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_is_rejected_with_a_clear_error(args, pattern):
    with pytest.raises((RuntimeError, ValueError, TypeError), match=pattern):
        mula_ops.dynamic_conv2d(**args)


def test_mixed_devices_are_rejected_by_the_fake_kernel():
    # A meta operand sends the call to the fake kernel (the Meta key outranks CPU).
    with pytest.raises(RuntimeError, match=r"expected weight on the same device as input \(cpu\)"):
        mula_ops.dynamic_conv2d(torch.rand(2, 4, 8, 8), torch.rand(2, 4, 2, 3, 3, device="meta"), groups=2)


def test_mixed_devices_are_rejected_by_the_cpu_kernel():
    # The same call sent straight to the CPU kernel meets its own check.
    cpu = torch._C.DispatchKeySet(torch._C.DispatchKey.CPU)
    with pytest.raises(RuntimeError, match=r"expected weight on the same device as input \(cpu\), got meta"):
        torch.ops.mula_ops.dynamic_conv2d.default.redispatch(
            cpu, torch.rand(2, 4, 8, 8), torch.rand(2, 4, 2, 3, 3, device="meta"), None,
            [1, 1], [0, 0], [1, 1], 2)


@pytest.mark.cuda
def test_mixed_cuda_and_cpu_devices_are_rejected():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")
    with pytest.raises(RuntimeError, match=r"on the same device as input"):
        mula_ops.dynamic_conv2d(torch.rand(2, 4, 8, 8), torch.rand(2, 4, 2, 3, 3, device="cuda"), groups=2)


def test_backward_rejects_a_wrong_grad_output():
    x, w = torch.rand(2, 4, 8, 8), torch.rand(2, 4, 2, 3, 3)
    with pytest.raises(RuntimeError, match=r"expected grad_output of shape \(2, 4, 8, 8\)"):
        torch.ops.mula_ops.dynamic_conv2d_backward(torch.rand(2, 4, 7, 8), x, w, [1, 1], [1, 1], [1, 1], 2,
                                                   [True, True, True])


def test_missing_library_gives_build_instructions(monkeypatch):
    from mula_ops import _library

    def missing(name):
        raise ImportError(f"No module named '{name}'")

    monkeypatch.setattr(importlib, "import_module", missing)
    with pytest.raises(ImportError, match=r"pip install -e \. --no-build-isolation"):
        _library.load_library()
