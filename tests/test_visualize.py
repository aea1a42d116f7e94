"""Skeleton and parsing pictures."""
import os

import numpy as np
import pytest
from PIL import Image

from mula_model.data import SyntheticPeople
from mula_model.visualize import (
    PALETTE,
    colorize_parsing,
    draw_skeleton,
    overlay_parsing,
    save_prediction,
    with_column_titles,
)


def test_palette_gives_every_class_its_own_colour():
    assert PALETTE.shape == (20, 3) and (PALETTE[0] == 0).all()
    assert len({tuple(colour) for colour in PALETTE}) == 20
    labels = np.array([[0, 5], [19, 5]])
    assert (colorize_parsing(labels) == PALETTE[labels]).all()


def test_overlay_leaves_background_alone():
    image = np.full((4, 4, 3), 100, dtype=np.uint8)
    labels = np.zeros((4, 4), dtype=np.uint8)
    labels[1, 2] = 13
    out = overlay_parsing(image, labels, alpha=0.5)
    assert (out[labels == 0] == 100).all()
    assert np.allclose(out[1, 2], (100 + PALETTE[13].astype(float)) / 2, atol=0.5)


def test_skeleton_is_drawn_at_the_joints_and_skips_missing_ones():
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    joints = np.full((16, 3), np.nan)
    joints[12, :2], joints[11, :2] = (10, 10), (40, 10)  # right shoulder -> right elbow
    out = draw_skeleton(image, joints)
    assert out[10, 25].any() and out[10, 10].any() and out[10, 40].any()
    assert not out[40:, :].any() and not image.any()  # nothing else drawn, input untouched


def test_save_prediction_writes_a_png(tmp_path):
    record = SyntheticPeople(1, seed=0, image_size=48).record(0)
    path = tmp_path / "out" / "pred.png"
    save_prediction(path, record.image, record.joints, record.parsing)
    with Image.open(path) as picture:
        assert picture.size == (96, 48) and picture.mode == "RGB"
    assert os.listdir(path.parent) == ["pred.png"]


def test_bad_labels_are_reported():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 20\)"):
        colorize_parsing(np.array([[25]]))
    with pytest.raises(ValueError, match="must equal the image size"):
        overlay_parsing(np.zeros((4, 4, 3), np.uint8), np.zeros((3, 4), np.uint8))


def test_column_titles_name_each_column():
    picture = np.zeros((20, 400, 3), dtype=np.uint8)
    titled = with_column_titles(picture, ["predicted pose", "predicted parsing", "true pose", "true parsing"])
    assert titled.shape == (36, 400, 3) and (titled[16:] == picture).all()
    strip = titled[:16]
    for column in range(4):  # dark text inside every quarter, white at its edges
        quarter = strip[:, column * 100:(column + 1) * 100]
        assert (quarter < 128).any() and (quarter[:, :3] == 255).all()
