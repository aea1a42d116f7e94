"""With the same weights, the three dynamic-conv implementations give the same
MuLA outputs and gradients (float64, so differences are rounding only)."""
import pytest
import torch

from mula_model import ModelConfig, build_model
from mula_model.losses import mula_loss
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
