"""MuLA architecture: the spec's shapes at every stage, parameter counts, no
unused layers, and the options that change behaviour."""
import pytest
import torch

from mula_model import ModelConfig, build_model
from mula_model.models.adaptation import ParameterAdapter

# Authors' code: 46,214,329 parameters minus 90 never-used 256->256 skip projections
# (BN 512 + conv 65,536 each) = 40,270,009 (spec section 2).
HOURGLASS_PARAMETERS = 46_214_329 - 90 * (512 + 256 * 256)
ADAPTER_PARAMETERS = 1_770_240


def parameter_count(model):
    return sum(p.numel() for p in model.parameters())


def record_shapes(model, image):
    """Output shape of every stem, hourglass, preliminary feature, adapter and adaptive conv."""
    shapes = {}
    hooks = [module.register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape)))
             for name, module in model.named_modules()
             if name.endswith(("stem", "hourglass", "preliminary", "adapter", "refine", "head", "encoder"))]
    output = model(image)
    for hook in hooks:
        hook.remove()
    return shapes, output


def test_default_hourglass_mula_has_the_spec_shapes_and_parameter_count():
    with torch.device("meta"):  # shapes only: no memory, no arithmetic
        model = build_model(ModelConfig(implementation="grouped"))
        shapes, output = record_shapes(model, torch.empty(2, 3, 256, 256))
    assert parameter_count(model) == HOURGLASS_PARAMETERS
    assert len(model.pose_stages) == len(model.parsing_stages) == 5
    for task in ("pose", "parsing"):
        assert shapes[f"{task}_stem"] == (2, 256, 64, 64)
        for stage in range(5):
            prefix = f"{task}_stages.{stage}."
            assert shapes[prefix + "hourglass"] == (2, 256, 64, 64)
            assert shapes[prefix + "preliminary"] == (2, 256, 64, 64)
            assert shapes[prefix + "adapter"] == (2, 256, 7, 7)  # one 7x7 filter per sample and channel
            assert shapes[prefix + "refine"] == (2, 256, 64, 64)
            assert parameter_count(getattr(model, f"{task}_stages")[stage].adapter) == ADAPTER_PARAMETERS
    assert [tuple(p.shape) for p in output.pose] == [(2, 17, 64, 64)] * 5
    assert [tuple(p.shape) for p in output.parsing] == [(2, 20, 256, 256)] * 5
    # Only the last stage has no remap to a next stage.
    assert model.pose_stages[4].remap_features is None and model.pose_stages[3].remap_features is not None


def test_vgg_mula_has_the_spec_shapes_and_parameter_count():
    with torch.device("meta"):
        model = build_model(ModelConfig(backbone="vgg", stages=1, implementation="grouped"))
        shapes, output = record_shapes(model, torch.empty(2, 3, 256, 256))
    assert parameter_count(model) == pytest.approx(44.66e6, rel=1e-3)
    assert shapes["pose.encoder"] == shapes["parsing.encoder"] == (2, 512, 32, 32)
    assert shapes["pose.adapter"] == shapes["parsing.adapter"] == (2, 512, 3, 3)
    assert [tuple(p.shape) for p in output.pose] == [(2, 17, 32, 32)]
    assert [tuple(p.shape) for p in output.parsing] == [(2, 20, 256, 256)]


def test_baseline_without_mutual_adaptation_drops_exactly_the_adaptation_layers():
    with torch.device("meta"):
        full = build_model(ModelConfig(implementation="grouped"))
        baseline = build_model(ModelConfig(mutual_adaptation=False))
    assert not any(isinstance(m, ParameterAdapter) for m in baseline.modules())
    # Per task and stage: adapter, U and V (1x1, 256 -> 256 with bias) and the BN after V.
    adaptation = 10 * (ADAPTER_PARAMETERS + 2 * (256 * 256 + 256) + 2 * 256)
    assert parameter_count(full) - parameter_count(baseline) == adaptation


TINY = dict(stages=2, features=16, hourglass_depth=2, input_size=64)


@pytest.mark.parametrize("options", [{}, {"next_stage_input": "refined"}, {"mutual_adaptation": False},
                                     {"backbone": "vgg", "stages": 1, "input_size": 128}])
def test_every_parameter_receives_a_gradient(options):
    """No unused layers: each parameter influences the loss."""
    torch.manual_seed(0)
    config = ModelConfig(**{**TINY, **options, "implementation": "grouped"})
    model = build_model(config)
    output = model(torch.randn(1 if config.backbone == "vgg" else 2, 3, config.input_size, config.input_size))
    loss = sum((p * torch.randn_like(p)).mean() for p in output.pose + output.parsing)
    loss.backward()
    unused = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert unused == []


def test_next_stage_input_option_changes_only_the_later_stages():
    torch.manual_seed(0)
    code = build_model(ModelConfig(**TINY, implementation="grouped")).eval()
    paper = build_model(ModelConfig(**TINY, implementation="grouped", next_stage_input="refined")).eval()
    paper.load_state_dict(code.state_dict())
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = code(image), paper(image)
    torch.testing.assert_close(a.pose[0], b.pose[0], rtol=0, atol=0)
    assert not torch.allclose(a.pose[1], b.pose[1])


def test_parsing_output_is_log_probabilities_at_input_size():
    torch.manual_seed(0)
    model = build_model(ModelConfig(**TINY, implementation="grouped")).eval()
    with torch.no_grad():
        parsing = model(torch.randn(2, 3, 64, 64)).parsing
    for log_probs in parsing:
        assert log_probs.shape == (2, 20, 64, 64)
        torch.testing.assert_close(log_probs.exp().sum(1), torch.ones(2, 64, 64))


@pytest.mark.parametrize("options, message", [
    ({"backbone": "resnet"}, "backbone"),
    ({"implementation": "fast"}, "implementation"),
    ({"backbone": "vgg", "stages": 2}, "exactly one stage"),
    ({"input_size": 100}, "input_size"),
])
def test_bad_configuration_is_rejected_with_a_clear_message(options, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**options)


def test_input_size_giving_an_even_dynamic_kernel_is_rejected():
    with pytest.raises(ValueError, match="odd size"):
        build_model(ModelConfig(stages=1, features=16, hourglass_depth=1, input_size=96, implementation="grouped"))
