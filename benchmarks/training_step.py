"""One MuLA training step (forward, loss, backward, RMSprop step) as a
zero-argument callable, for each implementation of the dynamic convolution:
timed by bench_model.py, and probed for memory and the largest trainable
batch by memory.py.

quick: a 2-stage Hourglass MuLA on 128x128 images (5x5 dynamic filters on
32x32 features); full: the default 5-stage model of the spec on 256x256
(7x7 on 64x64)."""
from dataclasses import dataclass, replace
from typing import Callable

import torch

from .passes import synchronize

MODEL_SETTINGS = {"quick": {"stages": 2, "input_size": 128}, "full": {}}


@dataclass(frozen=True)
class ModelCase:
    """A MuLA training step: the model of one suite at one batch size."""
    suite: str
    batch: int

    @property
    def name(self) -> str:
        return f"MuLA-{self.suite}"

    @property
    def label(self) -> str:
        return f"{self.name}-N{self.batch}"

    def with_batch(self, batch: int) -> "ModelCase":
        return replace(self, batch=batch)

    def describe(self) -> str:
        config = self.config("mula_ops")
        return f"MuLA {config.stages}-stage Hourglass, {config.input_size}px"

    def config(self, impl: str):
        from mula_model import ModelConfig  # imported late: the op benchmarks do not need the model
        return ModelConfig(implementation=impl, **MODEL_SETTINGS[self.suite])


def make_training_step(impl: str, case: ModelCase, device: str, seed: int = 0) -> Callable[[], None]:
    """Builds the model, its optimizer and a batch of random targets; returns
    the step. The gradients are released at the start of every step."""
    from mula_model import build_model
    from mula_model.losses import mula_loss

    config = case.config(impl)
    torch.manual_seed(seed)
    model = build_model(config).to(device).train()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1.5e-3)
    size, cells = config.input_size, config.input_size // config.output_stride
    image = torch.randn(case.batch, 3, size, size, device=device)
    heatmaps = torch.rand(case.batch, config.joints + 1, cells, cells, device=device)
    parsing = torch.randint(0, config.parts, (case.batch, size, size), device=device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        mula_loss(model(image), heatmaps, parsing).backward()
        optimizer.step()
        synchronize(device)

    return step
