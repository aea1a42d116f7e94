"""One MuLA training step (forward, loss, backward, RMSprop step) for each
implementation of the dynamic convolution, same weights and data.

    pytest benchmarks/bench_model.py --suite full --threads 2

The models of each suite are described in training_step.py."""
import pytest
import torch

from benchmarks.training_step import ModelCase, make_training_step

BATCH = 2
ROUNDS = 2


def test_mula_training_step(benchmark, record_best_time, request, device, impl):
    try:
        import mula_model  # noqa: F401
    except ImportError as error:
        pytest.skip(f"mula_model cannot be imported: {error}")
    case = ModelCase(request.config.getoption("--suite"), BATCH)
    try:
        step = make_training_step(impl, case, device)
        step()  # warm-up, untimed
    except NotImplementedError as error:
        pytest.skip(f"{impl} has no {device} kernel in this build: {str(error).split('. ')[0]}")
    benchmark.group = f"MuLA training step N={BATCH} {device}"
    benchmark.extra_info.update(kind="model", impl=impl, case=case.describe(), batch=BATCH, dtype="float32",
                                device=device, threads=torch.get_num_threads())
    # Whole training steps take seconds to minutes on a CPU: a fixed, small number of rounds.
    benchmark.pedantic(step, rounds=ROUNDS, iterations=1)
    record_best_time(benchmark, impl)
