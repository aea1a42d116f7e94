"""The LIP-format loader on a small fixture written by write_lip_dataset, and its errors."""
import json
import os

import numpy as np
import pytest

from mula_model.data import (
    AnnotationError,
    EvalTransform,
    LIPDataset,
    SyntheticPeople,
    make_loader,
    read_val_csv,
    write_lip_dataset,
)
from mula_model.data.lip import VAL_CSV, annotation_path


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("lip")
    write_lip_dataset(root, {"train": SyntheticPeople(5, seed=1, image_size=(72, 64)),
                             "val": SyntheticPeople(3, seed=2, image_size=64),
                             "test": SyntheticPeople(2, seed=3, image_size=64)})
    return root


def test_layout_follows_the_lip_release(fixture_root):
    expected = ["TrainVal_images/train_images", "TrainVal_images/val_images", "Testing_images/testing_images",
                "TrainVal_parsing_annotations/train_segmentations", "TrainVal_parsing_annotations/val_segmentations",
                "TrainVal_pose_annotations/LIP_SP_TRAIN_annotations.json", VAL_CSV]
    for relative in expected:
        assert os.path.exists(os.path.join(fixture_root, relative)), relative
    assert len(os.listdir(os.path.join(fixture_root, "TrainVal_images/train_images"))) == 5


@pytest.mark.parametrize("split, seed, size", [("train", 1, (72, 64)), ("val", 2, (64, 64))])
def test_loader_reads_back_what_was_written(fixture_root, split, seed, size):
    source = SyntheticPeople(5 if split == "train" else 3, seed=seed, image_size=size)
    dataset = LIPDataset(fixture_root, split)
    assert len(dataset) == len(source)
    for index in range(len(source)):
        original, read = source.record(index), dataset[index]
        assert read.name == original.name
        assert (read.parsing == original.parsing).all()  # PNG is lossless
        assert read.image.shape == original.image.shape
        assert np.abs(read.image.astype(int) - original.image.astype(int)).mean() < 6  # JPEG quality 95
        assert np.allclose(read.joints, original.joints, atol=1e-3)
        assert np.allclose(read.objpos, original.objpos, atol=1e-3)
        assert read.scale_provided == pytest.approx(original.scale_provided, abs=1e-4)


def test_val_csv_matches_annotations(fixture_root):
    names, joints = read_val_csv(os.path.join(fixture_root, VAL_CSV))
    dataset = LIPDataset(fixture_root, "val")
    assert names == [entry["im_name"] for entry in dataset.entries]
    assert np.allclose(joints, np.stack([dataset.record(i).joints for i in range(len(dataset))]), atol=1e-3)


def test_test_split_has_no_labels(fixture_root):
    record = LIPDataset(fixture_root, "test")[0]
    assert record.parsing is None and np.isnan(record.joints[:, :2]).all()
    sample = LIPDataset(fixture_root, "test", EvalTransform(64))[1]
    assert not sample["has_parsing"] and (sample["heatmaps"][16] == 1).all()


def test_loader_batches_samples(fixture_root):
    dataset = LIPDataset(fixture_root, "train", EvalTransform(32))
    batch = next(iter(make_loader(dataset, 4, shuffle=False)))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["heatmaps"].shape == (4, 17, 8, 8)
    assert batch["parsing"].shape == (4, 32, 32) and batch["orig_size"][0].tolist() == [72, 64]


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="LIP data folder not found"):
        LIPDataset(tmp_path / "nowhere", "train")
    with pytest.raises(FileNotFoundError, match="LIP_SP_VAL_annotations.json"):
        LIPDataset(tmp_path, "val")
    with pytest.raises(ValueError, match="split must be one of"):
        LIPDataset(tmp_path, "training")


def write_json(root, document):
    path = annotation_path(root, "train")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(document if isinstance(document, str) else json.dumps(document))
    return path


GOOD_ENTRY = {"im_name": "a.jpg", "joints": [[1, 2, 1]] * 16, "objpos": [3, 4], "scale_provided": 1.5}


@pytest.mark.parametrize("document, message", [
    ("{not json", "not valid JSON"),
    ({"people": []}, r'expected an object \{"root"'),
    ({"root": [GOOD_ENTRY, {"joints": []}]}, "entry 1: expected an object with a non-empty string 'im_name'"),
    ({"root": [dict(GOOD_ENTRY, joints=[[1, 2, 1]] * 15)]}, r"entry 0 \(a.jpg\): 'joints' must be a list of 16"),
    ({"root": [dict(GOOD_ENTRY, joints=[[1, 2]] + [[1, 2, 1]] * 15)]}, "joint 0 must be a list of 3 numbers"),
    ({"root": [dict(GOOD_ENTRY, objpos=["x", 1])]}, "'objpos' must be a list of 2 numbers"),
    ({"root": [dict(GOOD_ENTRY, scale_provided=-1)]}, "'scale_provided' must be a number >= 0"),
    ({"root": [{k: v for k, v in GOOD_ENTRY.items() if k != "objpos"}]}, "missing 'objpos'"),
])
def test_malformed_annotation_names_file_and_entry(tmp_path, document, message):
    path = write_json(tmp_path, document)
    with pytest.raises(AnnotationError, match=message) as error:
        LIPDataset(tmp_path, "train")
    assert str(path) in str(error.value)


def test_missing_image_is_named(tmp_path):
    write_json(tmp_path, {"root": [GOOD_ENTRY]})
    os.makedirs(tmp_path / "TrainVal_images/train_images")
    dataset = LIPDataset(tmp_path, "train")
    assert dataset.entries[0]["joints"][0].tolist() == [1, 2, 1]
    with pytest.raises(FileNotFoundError, match="a.jpg"):
        dataset[0]
