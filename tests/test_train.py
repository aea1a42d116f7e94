"""Training: exact resume after an interruption, the epoch log, best-model
checkpoints, the measured thread count, and clear errors for bad data or a
mismatched checkpoint."""
import dataclasses
import json

import pytest
import torch

import mula_model.train as training
from mula_model.cli import main
from mula_model.config import DataConfig, ModelConfig, TrainConfig
from mula_model.data import SyntheticPeople, write_lip_dataset
from mula_model.thread_count import MEASURED, candidate_counts

TINY_MODEL = ModelConfig(stages=2, features=16, hourglass_depth=2, input_size=64)
TINY_TRAIN = TrainConfig(epochs=2, batch_size=4, eval_every=2, eval_batch_size=8, threads=1)
TINY_DATA = DataConfig(synthetic_train=8, synthetic_val=4)
TINY_FLAGS = ["--stages", "2", "--features", "16", "--hourglass-depth", "2", "--input-size", "64",
              "--epochs", "1", "--batch-size", "4", "--threads", "1"]


def read_log(folder):
    return [json.loads(line) for line in (folder / training.LOG).read_text().splitlines()]


def test_resume_after_an_interruption_continues_exactly(tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    training.train(TINY_MODEL, TINY_TRAIN, TINY_DATA, straight, show_progress=False)

    interrupted = tmp_path / "interrupted"
    real_run_epoch, calls = training.run_epoch, []

    def crash_in_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_run_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "run_epoch", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        training.train(TINY_MODEL, TINY_TRAIN, TINY_DATA, interrupted, show_progress=False)
    assert [entry["epoch"] for entry in read_log(interrupted)] == [1]  # only the current epoch is lost
    monkeypatch.setattr(training, "run_epoch", real_run_epoch)
    training.train(TINY_MODEL, TINY_TRAIN, TINY_DATA, interrupted, resume=True, show_progress=False)

    expected, resumed = read_log(straight), read_log(interrupted)
    assert [e["epoch"] for e in resumed] == [1, 2]
    assert resumed[1]["loss"] == expected[1]["loss"]  # same next loss, bit for bit
    assert resumed[1]["pckh"] == expected[1]["pckh"] and resumed[1]["miou"] == expected[1]["miou"]
    a, b = torch.load(straight / training.LAST), torch.load(interrupted / training.LAST)
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert a["best"] == b["best"]


def test_checkpoints_and_log_of_a_run(tmp_path):
    metrics = training.train(TINY_MODEL, TINY_TRAIN, TINY_DATA, tmp_path, show_progress=False)
    log = read_log(tmp_path)
    assert [e["epoch"] for e in log] == [1, 2]
    assert "pckh" not in log[0] and log[1]["pckh"] == metrics["pckh"]  # validated every 2 epochs
    assert all(e["loss"] > 0 and e["images_per_second"] > 0 for e in log)
    last = torch.load(tmp_path / training.LAST)
    assert last["epoch"] == 2 and last["model_config"] == TINY_MODEL.architecture()
    for key, name in (("pckh", training.BEST_PCKH), ("miou", training.BEST_MIOU)):
        assert last["best"][key] == {"value": metrics[key], "epoch": 2}
        assert torch.load(tmp_path / name)["epoch"] == 2
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temp files behind
    with pytest.raises(FileExistsError, match="--resume"):
        training.train(TINY_MODEL, TINY_TRAIN, TINY_DATA, tmp_path, show_progress=False)


def test_measured_thread_count_leaves_the_training_unchanged(tmp_path, capsys):
    """Measuring the thread count trains a copy: the run then matches one with
    that count set from the start, loss for loss."""
    threads = torch.get_num_threads()
    try:
        training.train(TINY_MODEL, dataclasses.replace(TINY_TRAIN, threads=MEASURED), TINY_DATA,
                       tmp_path / "measured", show_progress=False)
        chosen = torch.get_num_threads()
        assert f"training with {chosen}" in capsys.readouterr().out
        training.train(TINY_MODEL, dataclasses.replace(TINY_TRAIN, threads=chosen), TINY_DATA,
                       tmp_path / "fixed", show_progress=False)
    finally:
        torch.set_num_threads(threads)
    untimed = [[{key: value for key, value in entry.items() if key not in ("seconds", "images_per_second")}
                for entry in read_log(tmp_path / run)] for run in ("measured", "fixed")]
    assert untimed[0] == untimed[1] and "miou" in untimed[0][-1]


def test_thread_count_candidates():
    assert candidate_counts(1) == [1]
    assert candidate_counts(2) == [1, 2]
    assert candidate_counts(6) == [1, 2, 4, 6]
    with pytest.raises(ValueError, match="threads"):
        TrainConfig(threads=-2)


def test_learning_rate_schedule_follows_the_code():
    config = TrainConfig(epochs=250, lr=0.0015)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, config.lr_factor)
    lrs = []
    for _ in range(config.epochs):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    factors = [lrs[epoch] / 0.0015 for epoch in (0, 149, 150, 169, 170, 200, 229, 230, 249)]
    assert factors == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.1, 0.1, 0.05, 0.05])


def test_missing_data_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")] + TINY_FLAGS) == 2
    assert "data folder not found" in capsys.readouterr().err


def test_malformed_annotation_is_a_clear_error(tmp_path, capsys):
    people = SyntheticPeople(2, seed=3, image_size=64)
    write_lip_dataset(tmp_path / "lip", {"train": people, "val": people})
    annotations = tmp_path / "lip" / "TrainVal_pose_annotations" / "LIP_SP_TRAIN_annotations.json"
    document = json.loads(annotations.read_text())
    document["root"][1]["joints"] = document["root"][1]["joints"][:15]
    annotations.write_text(json.dumps(document))
    assert main(["train", "--data", str(tmp_path / "lip"), "--out", str(tmp_path / "run")] + TINY_FLAGS) == 2
    error = capsys.readouterr().err
    assert "LIP_SP_TRAIN_annotations.json, entry 1" in error and "joints" in error


def test_checkpoint_from_another_configuration_is_a_clear_error(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--synthetic-train", "4", "--synthetic-val", "2", "--out", str(run)] + TINY_FLAGS) == 0
    flags = [flag if flag != "16" else "32" for flag in TINY_FLAGS]  # --features 32
    assert main(["train", "--synthetic-train", "4", "--synthetic-val", "2", "--out", str(run), "--resume"]
                + flags) == 2
    assert "features: checkpoint 16, requested 32" in capsys.readouterr().err
