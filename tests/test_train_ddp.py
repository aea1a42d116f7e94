"""Two-process data-parallel training on the CPU (gloo, batch norm synchronised
across processes) matches one process with the same global batch.

In float64: in float32 the gradients of this deep network carry rounding noise
of about 1e-3 relative (measured against float64), which RMSprop's first,
sign-like steps would turn into differences of the size of the updates."""
import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

import mula_model.train as training
from mula_model.config import DataConfig, ModelConfig, TrainConfig

MODEL = ModelConfig(stages=2, features=16, hourglass_depth=2, input_size=64)
# Unshuffled, so that the global batch k is samples 4k..4k+3 in both runs.
TRAIN = TrainConfig(epochs=2, batch_size=4, eval_every=2, eval_batch_size=8, threads=1, shuffle=False)
DATA = DataConfig(synthetic_train=8, synthetic_val=4)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _process(rank, world_size, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size))
    torch.set_default_dtype(torch.float64)
    training.train(MODEL, TRAIN, DATA, out_dir, device="cpu", show_progress=False)


@pytest.fixture
def float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path, float64):
    single, double = tmp_path / "single", tmp_path / "double"
    training.train(MODEL, TRAIN, DATA, single, device="cpu", show_progress=False)
    mp.start_processes(_process, args=(2, _free_port(), str(double)), nprocs=2, start_method="spawn")

    logs = [[json.loads(line) for line in (run / training.LOG).read_text().splitlines()] for run in (single, double)]
    for one, two in zip(*logs):
        # Summation order differs (two half batches); RMSprop's first steps amplify
        # that float64 rounding to ~1e-9. A missing synchronisation gives >1e-5.
        assert abs(one["loss"] - two["loss"]) <= 1e-7 * one["loss"]
    one, two = torch.load(single / training.LAST)["model"], torch.load(double / training.LAST)["model"]
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-6, atol=1e-8, msg=name)
