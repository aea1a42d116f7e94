"""One MuLA training step (forward, loss, backward, RMSprop step) for each
implementation of the dynamic convolution, same weights and data.

    pytest benchmarks/bench_model.py --suite full --threads 2

quick: a 2-stage Hourglass MuLA on 128x128 images (5x5 dynamic filters on
32x32 features); full: the default 5-stage model of the spec on 256x256
(7x7 on 64x64)."""
import pytest
import torch

from benchmarks.passes import synchronize

MODEL_SETTINGS = {"quick": {"stages": 2, "input_size": 128}, "full": {}}
BATCH = 2
ROUNDS = 2


def test_mula_training_step(benchmark, record_best_time, request, device, impl):
    try:
        from mula_model import ModelConfig, build_model
        from mula_model.losses import mula_loss
    except ImportError as error:
        pytest.skip(f"mula_model cannot be imported: {error}")
    suite = request.config.getoption("--suite")
    config = ModelConfig(implementation=impl, **MODEL_SETTINGS[suite])
    torch.manual_seed(0)
    model = build_model(config).to(device).train()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1.5e-3)
    size = config.input_size
    image = torch.randn(BATCH, 3, size, size, device=device)
    heatmaps = torch.rand(BATCH, config.joints + 1, size // config.output_stride, size // config.output_stride,
                          device=device)
    parsing = torch.randint(0, config.parts, (BATCH, size, size), device=device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        mula_loss(model(image), heatmaps, parsing).backward()
        optimizer.step()
        synchronize(device)

    try:
        step()  # warm-up, untimed
    except NotImplementedError as error:
        pytest.skip(f"{impl} has no {device} kernel in this build: {str(error).split('. ')[0]}")
    benchmark.group = f"MuLA training step N={BATCH} {device}"
    benchmark.extra_info.update(kind="model", impl=impl, case=f"MuLA {config.stages}-stage {size}px",
                                batch=BATCH, dtype="float32", device=device, threads=torch.get_num_threads())
    # Whole training steps take seconds to minutes on a CPU: a fixed, small number of rounds.
    benchmark.pedantic(step, rounds=ROUNDS, iterations=1)
    record_best_time(benchmark, impl)
