"""The evaluate and predict programs: LIP output formats, the flip test, and
the demo's picture."""
import numpy as np
import pytest
import torch
from PIL import Image

import mula_model.train as training
from mula_model import ModelConfig, build_model
from mula_model.cli import main
from mula_model.data import (
    FLIP_HEATMAP_CHANNELS,
    SyntheticPeople,
    read_label_png,
    read_pose_csv,
    save_image,
    write_lip_dataset,
)
from mula_model.evaluate import predict_batch

TINY_FLAGS = ["--stages", "2", "--features", "16", "--hourglass-depth", "2", "--input-size", "64",
              "--epochs", "1", "--batch-size", "4", "--threads", "1"]


@pytest.fixture(scope="module")
def lip_run(tmp_path_factory):
    """A LIP-format fixture (non-square images) and a model trained on it for one epoch."""
    root = tmp_path_factory.mktemp("programs")
    write_lip_dataset(root / "lip", {"train": SyntheticPeople(4, seed=1, image_size=(80, 60)),
                                     "val": SyntheticPeople(3, seed=2, image_size=(72, 50))})
    assert main(["train", "--data", str(root / "lip"), "--out", str(root / "run")] + TINY_FLAGS) == 0
    return root


def test_evaluate_writes_lip_outputs_at_original_size(lip_run, capsys):
    out = lip_run / "evaluation"
    assert main(["evaluate", str(lip_run / "run" / training.LAST), "--data", str(lip_run / "lip"),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "PCKh@0.5" in printed and "mIoU" in printed and "fwIoU" in printed
    names, joints = read_pose_csv(out / "pose_predictions.csv")
    assert len(names) == 3 and joints.shape == (3, 16, 2)
    # Mapped back from the letterboxed input: the 72 x 72 square centred on the 50 x 72 image.
    assert np.all((joints[..., 0] >= -11.5) & (joints[..., 0] <= 60.5) & (joints[..., 1] >= 0) & (joints[..., 1] < 72))
    for name in names:
        labels = read_label_png(out / "parsing" / name.replace(".jpg", ".png"))
        assert labels.shape == (72, 50) and labels.max() < 20


def test_predict_writes_pictures_and_raw_outputs(lip_run, tmp_path):
    image = SyntheticPeople(1, seed=5, image_size=(90, 70)).record(0).image
    save_image(tmp_path / "person.jpg", image)
    assert main(["predict", str(lip_run / "run" / training.LAST), str(tmp_path / "*.jpg"),
                 "--out", str(tmp_path / "out"), "--implementation", "grouped"]) == 0
    picture = np.asarray(Image.open(tmp_path / "out" / "person_prediction.png"))
    assert picture.shape[0] == 90 and picture.shape[1] >= 70
    raw = np.load(tmp_path / "out" / "person_prediction.npz")
    assert raw["joints"].shape == (16, 2) and raw["parsing"].shape == (90, 70)
    assert raw["heatmaps"].shape == (17, 16, 16)


def test_flip_test_is_symmetric():
    """Averaging with the flipped image makes the prediction of a mirrored
    image the mirror of the prediction (left and right channels swapped)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(stages=1, features=16, hourglass_depth=2, input_size=64,
                                    implementation="grouped")).eval()
    image = torch.randn(2, 3, 64, 64)
    heatmaps, _ = predict_batch(model, image)
    mirrored, _ = predict_batch(model, image.flip(-1))
    torch.testing.assert_close(mirrored, heatmaps.flip(-1)[:, torch.as_tensor(FLIP_HEATMAP_CHANNELS)])
