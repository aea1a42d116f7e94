"""With the same weights, the three dynamic-conv implementations give the same
MuLA outputs and gradients (float64, so differences are rounding only)."""
import pytest
import torch

from mula_model import ModelConfig, build_model
from mula_model.losses import mula_loss
from mula_model.models.adaptation import FactorizedAdaptiveConv
from mula_ops import IMPLEMENTATIONS

# input 128 -> 32x32 features -> 3x3 dynamic filters (the VGG case's kernel size).
TINY = dict(stages=1, features=16, hourglass_depth=2, input_size=128)


def outputs_and_gradients(implementation, state, image, heatmaps, parsing):
    model = build_model(ModelConfig(**TINY, implementation=implementation)).double()
    model.load_state_dict(state)
    output = model(image)
    mula_loss(output, heatmaps, parsing).backward()
    return output, {name: p.grad for name, p in model.named_parameters()}


def test_mula_ops_grouped_and_unfold_agree_on_outputs_and_gradients():
    torch.manual_seed(0)
    state = build_model(ModelConfig(**TINY, implementation="grouped")).double().state_dict()
    image = torch.randn(2, 3, 128, 128, dtype=torch.float64)
    heatmaps = torch.rand(2, 17, 32, 32, dtype=torch.float64)
    parsing = torch.randint(0, 20, (2, 128, 128))
    results = {impl: outputs_and_gradients(impl, state, image, heatmaps, parsing)
               for impl in IMPLEMENTATIONS}
    reference_output, reference_grads = results["grouped"]
    for implementation in ("mula_ops", "unfold"):
        output, grads = results[implementation]
        for ours, theirs in zip(output.pose + output.parsing, reference_output.pose + reference_output.parsing):
            torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9)
        for name, grad in grads.items():
            torch.testing.assert_close(grad, reference_grads[name], rtol=1e-7, atol=1e-9, msg=name)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_model_repr_names_the_implementation(implementation):
    model = build_model(ModelConfig(**TINY, implementation=implementation))
    dynamic = model.pose_stages[0].refine.dynamic
    assert dynamic.implementation == implementation
    assert dynamic.kernel_size == (3, 3) and dynamic.groups == 16


@pytest.mark.parametrize("batch_norm", [True, False], ids=["hourglass", "vgg"])
def test_double_backward_through_factorized_adaptive_conv_matches_grouped(batch_norm):
    """A gradient penalty through MuLA's adaptive convolution (second order in
    the features and the predicted filters) equals the grouped trick's, which
    PyTorch's own conv differentiates."""
    torch.manual_seed(0)
    state = FactorizedAdaptiveConv(6, 3, batch_norm, "grouped").double().state_dict()
    features = torch.randn(2, 6, 9, 9, dtype=torch.float64)
    filters = torch.randn(2, 6, 3, 3, dtype=torch.float64)
    results = {}
    for implementation in ("mula_ops", "grouped"):
        module = FactorizedAdaptiveConv(6, 3, batch_norm, implementation).double()
        module.load_state_dict(state)
        x, w = features.clone().requires_grad_(True), filters.clone().requires_grad_(True)
        out = module(x, w)
        grads = torch.autograd.grad(out.square().sum(), (x, w), create_graph=True)
        penalty = sum(g.square().sum() for g in grads)
        results[implementation] = torch.autograd.grad(penalty, (x, w, *module.parameters()))
    for ours, theirs in zip(results["mula_ops"], results["grouped"]):
        assert theirs.abs().max() > 0
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-10)
